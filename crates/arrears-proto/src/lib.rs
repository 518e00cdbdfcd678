//! Code generated from the `.proto` files in the top-level `proto/` folder, in a
//! crate of its own so that only a contract change rebuilds it.

/// The daemon's public API.
pub mod v1 {
    tonic::include_proto!("arrears.v1");
    /// Served by reflection, so `grpcurl` and friends need no local copy of the files.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("arrears_descriptor");
}

/// What an external connector plugin serves; the daemon is its client.
pub mod connector_v1 {
    tonic::include_proto!("arrears.connector.v1");
}
