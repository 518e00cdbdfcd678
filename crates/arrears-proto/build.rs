//! Generates the gRPC code from `proto/` with a vendored protoc, so a fresh machine
//! needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("arrears_descriptor.bin"))
        // `--remote … --json` prints the daemon's answers as they came.
        .type_attribute(".arrears.v1", "#[derive(serde::Serialize)]")
        .compile_protos(&["../../proto/arrears/v1/arrears.proto"], &["../../proto"])?;
    // The plugin contract: the daemon is its client; kept out of the descriptor set
    // so reflection lists only what the daemon serves.
    tonic_prost_build::configure().compile_protos(
        &["../../proto/arrears/connector/v1/connector.proto"],
        &["../../proto"],
    )?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
