//! `--remote URL`: the CLI as a client of a running daemon, so an admin needs no
//! other tool. The token comes from `ARREARS_TOKEN` or `--token-file`, never a flag
//! value (it would end up in shell history and process lists).

use anyhow::{Context, Result};
use arrears::server::pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

type Auth = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;

pub struct Remote {
    channel: Channel,
    token: Option<String>,
}

impl Remote {
    /// `https://` URLs use TLS; `ca` (PEM) is the authority that signed the
    /// daemon's certificate, needed because daemons usually run on a private CA.
    pub async fn connect(url: &str, token: Option<String>, ca: Option<Vec<u8>>) -> Result<Remote> {
        let mut ep = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("--remote {url}: not a URL (e.g. http://127.0.0.1:50051)"))?
            .connect_timeout(std::time::Duration::from_secs(5));
        if url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            match ca {
                Some(pem) => tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                None => anyhow::bail!(
                    "--remote {url} uses TLS: give the CA certificate with --ca-file (or ARREARS_CA_FILE)"
                ),
            }
            ep = ep
                .tls_config(tls)
                .with_context(|| format!("--remote {url}: TLS configuration"))?;
        } else if ca.is_some() {
            anyhow::bail!("--ca-file is for https:// remotes; {url} is plaintext");
        }
        let channel = ep
            .connect()
            .await
            .with_context(|| format!("connecting to the daemon at {url}"))?;
        Ok(Remote { channel, token })
    }

    pub fn auth(&self) -> InterceptedService<Channel, Auth> {
        let header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = self
            .token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok());
        let f: Auth = Box::new(move |mut r: Request<()>| {
            if let Some(h) = &header {
                r.metadata_mut().insert("authorization", h.clone());
            }
            Ok(r)
        });
        InterceptedService::new(self.channel.clone(), f)
    }

    pub fn worklists(
        &self,
    ) -> pb::worklists_client::WorklistsClient<InterceptedService<Channel, Auth>> {
        pb::worklists_client::WorklistsClient::new(self.auth())
    }
    pub fn cases(&self) -> pb::cases_client::CasesClient<InterceptedService<Channel, Auth>> {
        pb::cases_client::CasesClient::new(self.auth())
    }
    pub fn admin(&self) -> pb::admin_client::AdminClient<InterceptedService<Channel, Auth>> {
        pb::admin_client::AdminClient::new(self.auth())
    }
    pub fn explain(&self) -> pb::explain_client::ExplainClient<InterceptedService<Channel, Auth>> {
        pb::explain_client::ExplainClient::new(self.auth())
    }
    pub fn promises(
        &self,
    ) -> pb::promises_client::PromisesClient<InterceptedService<Channel, Auth>> {
        pb::promises_client::PromisesClient::new(self.auth())
    }
    pub fn agreements(
        &self,
    ) -> pb::agreements_client::AgreementsClient<InterceptedService<Channel, Auth>> {
        pb::agreements_client::AgreementsClient::new(self.auth())
    }
    pub fn connectors(
        &self,
    ) -> pb::connectors_client::ConnectorsClient<InterceptedService<Channel, Auth>> {
        pb::connectors_client::ConnectorsClient::new(self.auth())
    }
    pub fn write_offs(
        &self,
    ) -> pb::write_offs_client::WriteOffsClient<InterceptedService<Channel, Auth>> {
        pb::write_offs_client::WriteOffsClient::new(self.auth())
    }
}

/// A status as the user should read it: code and the server's message.
pub fn describe(s: Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// `--remote … worklist --json`: the page with its total.
pub fn worklist_json(page: &pb::WorklistPage) -> Result<()> {
    let v: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "customer_id": e.customer_id, "customer": e.customer, "customer_name": e.customer_name,
                "group": e.collection_group, "collector": e.collector, "nad": e.nad,
                "priority": pb::Priority::try_from(e.priority).map(|p| p.as_str_name()).unwrap_or("?"),
                "score": e.score, "segment": e.segment, "profile": e.profile, "items": e.items,
                "amount": e.amount.as_ref().map(|m| format!("{} {}", m.amount, m.currency)),
                "reason": e.reason, "days_overdue": e.days_overdue,
            })
        })
        .collect();
    outln!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"total": page.total, "entries": v}))?
    );
    Ok(())
}
