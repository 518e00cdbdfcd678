//! Sends one outgoing message over one channel: e-mail over SMTP, or an SMS or
//! portal notification through a webhook. The outcome is classified so that the
//! outbox worker can record the message as sent, retry it later ([`SendError::Transient`]),
//! fall back to its next channel ([`SendError::Permanent`]) or hold the channel
//! until an operator fixes its settings ([`SendError::Config`]). Nothing is
//! recorded here, and everything blocks: run it on a blocking thread.
//!
//! Secrets (the SMTP password, the webhook token) come only from an environment
//! variable or a file, are read once by `resolve()`, and appear in no error,
//! log line or `Debug` output.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message, SmtpTransport, Transport};
use serde::{Deserialize, Serialize};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// The `delivery:` section of the daemon's config. A channel without settings is off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub smtp: Option<SmtpConfig>,
    pub webhook: Option<WebhookConfig>,
}

impl DeliveryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        if let Some(webhook) = &self.webhook {
            webhook.validate()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plaintext: only for a relay on the same host or a trusted network.
    None,
    /// Plaintext greeting upgraded with STARTTLS; a server that does not offer
    /// it is refused rather than talked to in the clear.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

impl SmtpSecurity {
    fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by `security`: 25, 587 (starttls) or 465 (tls).
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (a trailing line break is ignored).
    pub password_file: Option<PathBuf>,
    pub from: FromConfig,
    /// `addr@example.com` or `Name <addr@example.com>`.
    pub reply_to: Option<String>,
    /// Limit for connecting and for each reply of the server, e.g. `10s`.
    #[serde(default = "default_timeout", with = "arrears_core::human_duration")]
    pub timeout: Duration,
    /// Name sent with EHLO; the machine's host name when absent.
    pub helo_name: Option<String>,
    /// PEM bundle of extra CAs trusted besides the public roots (a private relay).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromConfig {
    pub address: String,
    pub name: Option<String>,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = |field: &str, message: &str| ConfigError::new(format!("smtp.{field}"), message);
        if self.host.is_empty() || self.host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(f("host", "must be a host name or IP address"));
        }
        if self.port == Some(0) {
            return Err(f("port", "must be between 1 and 65535"));
        }
        if self.timeout.is_zero() {
            return Err(f("timeout", "must be longer than 0s"));
        }
        check_secret_source(
            "smtp",
            ("password_env", self.password_env.as_deref()),
            ("password_file", self.password_file.as_deref()),
        )?;
        match (
            &self.username,
            self.password_env.is_some() || self.password_file.is_some(),
        ) {
            (Some(u), _) if u.is_empty() => return Err(f("username", "must not be empty")),
            (Some(_), false) => {
                return Err(f("username", "needs password_env or password_file"));
            }
            (None, true) => {
                return Err(f("username", "is missing: a password is given without one"));
            }
            _ => {}
        }
        // Lettre would send the password over a plaintext connection without a word.
        if self.username.is_some()
            && self.security == SmtpSecurity::None
            && !is_loopback(&self.host)
        {
            return Err(f(
                "security",
                "`none` would send the password in the clear; use starttls or tls \
                 (plaintext with a password is allowed only to a loopback relay)",
            ));
        }
        if let Err(e) = self.from.address.parse::<Address>() {
            return Err(f("from.address", &format!("not an e-mail address: {e}")));
        }
        if self.from.name.as_deref().is_some_and(has_control) {
            return Err(f("from.name", "must not contain control characters"));
        }
        if let Some(r) = &self.reply_to {
            if let Err(e) = r.parse::<Mailbox>() {
                return Err(f("reply_to", &format!("not an e-mail address: {e}")));
            }
        }
        if let Some(h) = &self.helo_name {
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(f("helo_name", "must be a host name"));
            }
        }
        if self.ca_file.is_some() && self.security == SmtpSecurity::None {
            return Err(f("ca_file", "is only used with security starttls or tls"));
        }
        Ok(())
    }

    /// Validates the settings and reads what lives outside them: the password and
    /// the CA bundle. Call it once (at start-up or config reload); sends then touch
    /// neither the environment nor the filesystem.
    pub fn resolve(&self) -> Result<SmtpSecrets, SendError> {
        self.validate()?;
        let password = read_secret(
            "smtp",
            ("password_env", self.password_env.as_deref()),
            ("password_file", self.password_file.as_deref()),
            |_| Ok(()),
        )?;
        let ca = match &self.ca_file {
            None => None,
            Some(path) => Some(read_ca(path)?),
        };
        Ok(SmtpSecrets { password, ca })
    }
}

fn read_ca(path: &Path) -> Result<Certificate, SendError> {
    let pem = std::fs::read(path).map_err(|e| {
        config_error(format!(
            "delivery.smtp.ca_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    // An empty or non-PEM file parses as zero certificates without an error.
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(config_error(format!(
            "delivery.smtp.ca_file: {} holds no PEM certificate",
            path.display()
        )));
    }
    Certificate::from_pem(&pem)
        .map_err(|e| config_error(format!("delivery.smtp.ca_file: {}: {e}", path.display())))
}

/// What [`SmtpConfig::resolve`] read: the password and the extra CAs.
#[derive(Clone)]
pub struct SmtpSecrets {
    password: Option<Secret>,
    ca: Option<Certificate>,
}

impl fmt::Debug for SmtpSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSecrets")
            .field("password", &self.password)
            .field("ca", &self.ca.as_ref().map(|_| "loaded"))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`; receives `POST` with a JSON body.
    pub url: String,
    /// Name of the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// File holding the bearer token (a trailing line break is ignored).
    pub token_file: Option<PathBuf>,
    /// Limit for the whole request, e.g. `10s`.
    #[serde(default = "default_timeout", with = "arrears_core::human_duration")]
    pub timeout: Duration,
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = |field: &str, message: &str| ConfigError::new(format!("webhook.{field}"), message);
        let uri: ureq::http::Uri = self
            .url
            .parse()
            .map_err(|e| f("url", &format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(f("url", "must start with http:// or https://")),
        };
        let Some(authority) = uri.authority() else {
            return Err(f("url", "has no host"));
        };
        // Credentials in the URL would end up in logs and error messages.
        if authority.as_str().contains('@') {
            return Err(f(
                "url",
                "must not hold credentials; use token_env or token_file",
            ));
        }
        if self.timeout.is_zero() {
            return Err(f("timeout", "must be longer than 0s"));
        }
        check_secret_source(
            "webhook",
            ("token_env", self.token_env.as_deref()),
            ("token_file", self.token_file.as_deref()),
        )?;
        let has_token = self.token_env.is_some() || self.token_file.is_some();
        if has_token && !https && !is_loopback(authority.host()) {
            return Err(f(
                "url",
                "plain http would send the token in the clear; use https \
                 (http with a token is allowed only to a loopback address)",
            ));
        }
        Ok(())
    }

    /// Validates the settings and reads the token, once.
    pub fn resolve(&self) -> Result<WebhookSecrets, SendError> {
        self.validate()?;
        let token = read_secret(
            "webhook",
            ("token_env", self.token_env.as_deref()),
            ("token_file", self.token_file.as_deref()),
            // Checked here so that a bad token is a config error at start-up,
            // not an opaque header error at each send.
            |t| {
                if t.bytes().all(|b| b.is_ascii_graphic()) {
                    Ok(())
                } else {
                    Err("has characters not allowed in an HTTP header")
                }
            },
        )?;
        Ok(WebhookSecrets { token })
    }
}

/// What [`WebhookConfig::resolve`] read: the bearer token, if any.
#[derive(Clone, Debug)]
pub struct WebhookSecrets {
    token: Option<Secret>,
}

/// A password or token. No `Display`, and `Debug` shows nothing of it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Secret {
    /// Defence in depth: should a server ever echo the secret, it stays out of
    /// the reasons the caller stores and logs.
    fn redact(secret: Option<&Secret>, text: String) -> String {
        match secret {
            Some(s) if !s.0.is_empty() && text.contains(&s.0) => text.replace(&s.0, "[redacted]"),
            _ => text,
        }
    }
}

fn check_secret_source(
    section: &str,
    (env_field, env): (&str, Option<&str>),
    (file_field, file): (&str, Option<&Path>),
) -> Result<(), ConfigError> {
    if env.is_some() && file.is_some() {
        return Err(ConfigError::new(
            format!("{section}.{env_field}"),
            &format!("give only one of {env_field} and {file_field}"),
        ));
    }
    if env.is_some_and(|v| v.is_empty() || v.contains('=') || v.contains('\0')) {
        return Err(ConfigError::new(
            format!("{section}.{env_field}"),
            "must be the name of an environment variable",
        ));
    }
    if file.is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(ConfigError::new(
            format!("{section}.{file_field}"),
            "must be a file path",
        ));
    }
    Ok(())
}

/// Reads a secret from its variable or file and checks it with `usable`. Errors
/// name the variable or file, never any of its content.
fn read_secret(
    section: &str,
    (env_field, env): (&str, Option<&str>),
    (file_field, file): (&str, Option<&Path>),
    usable: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<Option<Secret>, SendError> {
    let (source, value) = match (env, file) {
        (Some(var), _) => {
            let source = format!("delivery.{section}.{env_field}: environment variable {var}");
            match std::env::var(var) {
                Ok(v) => (source, v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(config_error(format!("{source} is not set")))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(config_error(format!("{source} is not valid UTF-8")))
                }
            }
        }
        (None, Some(path)) => {
            let source = format!("delivery.{section}.{file_field}: {}", path.display());
            let text = arrears_secret::read(path)
                .map_err(|e| config_error(format!("delivery.{section}.{file_field}: {e}")))?;
            // Only the line break an editor adds: spaces may belong to a password.
            (source, text.trim_end_matches(['\r', '\n']).to_string())
        }
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(config_error(format!("{source} is empty")));
    }
    usable(&value).map_err(|why| config_error(format!("{source}: the value {why}")))?;
    Ok(Some(Secret(value)))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A config field that is wrong, named by its path under `delivery:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery.{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: String, message: &str) -> ConfigError {
        ConfigError {
            field,
            message: message.to_string(),
        }
    }
}

/// Why a message was not sent, sorted by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel may work later (connection refused, timeout, SMTP 4xx, HTTP 5xx
    /// or 429): keep the message and retry it on the same channel.
    #[error("transient: {reason}")]
    Transient { reason: String },
    /// This message cannot go over this channel (unknown recipient, bad address,
    /// SMTP 5xx, HTTP 4xx): fall back to the next channel.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
    /// The channel's own settings are wrong (missing or refused credentials,
    /// untrusted certificate, redirecting webhook): every message would fail the
    /// same way, so hold the channel and alert instead of burning messages.
    #[error("delivery config: {reason}")]
    Config { reason: String },
}

impl SendError {
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient { reason }
            | SendError::Permanent { reason }
            | SendError::Config { reason } => reason,
        }
    }
}

impl From<ConfigError> for SendError {
    fn from(e: ConfigError) -> SendError {
        config_error(e.to_string())
    }
}

fn transient(reason: impl Into<String>) -> SendError {
    SendError::Transient {
        reason: reason.into(),
    }
}

fn permanent(reason: impl Into<String>) -> SendError {
    SendError::Permanent {
        reason: reason.into(),
    }
}

fn config_error(reason: impl Into<String>) -> SendError {
    SendError::Config {
        reason: reason.into(),
    }
}

/// One message from the outbox.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The outbox id: e-mail `Message-ID` `<arrears.ID@from-domain>` and the
    /// webhook's `Idempotency-Key`, so a retried send can be recognised. Letters,
    /// digits and `-_.` (not at either end), at most 200.
    pub message_id: String,
    /// The customer the message is about (webhook body only).
    pub customer: String,
    /// E-mail address (`a@b` or `Name <a@b>`), phone number or portal user.
    pub to: String,
    /// E-mail only, e.g. the collection manager. One refused address fails the
    /// whole message, as SMTP transactions are all-or-nothing here.
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    /// E-mail only: sent with `text` as multipart/alternative.
    pub html: Option<String>,
    /// E-mail only, e.g. letters as HTML files.
    pub attachments: Vec<Attachment>,
}

#[derive(Clone, Default)]
pub struct Attachment {
    pub name: String,
    /// e.g. `text/html; charset=utf-8`
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// What the receiving side said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// SMTP reply code (250) or HTTP status (200, 202…).
    pub code: u16,
    /// The server's reply, e.g. `250 2.0.0 Ok: queued as 4F2A` or `HTTP 202: {"id":"…"}`.
    pub reply: String,
}

/// Sends `msg` as e-mail. A transport is built per send and pooling is off: the
/// outbox sends in bursts hours apart, and a pooled connection that the server
/// dropped meanwhile would fail the next send for a reason that says nothing
/// about the message.
pub fn send_email(
    cfg: &SmtpConfig,
    secrets: &SmtpSecrets,
    msg: &Outgoing,
) -> Result<Receipt, SendError> {
    let email = build_email(cfg, msg)?;
    let transport = build_transport(cfg, secrets)?;
    match transport.send(&email) {
        Ok(response) => {
            let code = u16::from(response.code());
            let lines: Vec<&str> = response.message().collect();
            let reply = Secret::redact(
                secrets.password.as_ref(),
                format!("{code} {}", lines.join(" ")),
            );
            tracing::debug!(message_id = %msg.message_id, code, "e-mail accepted");
            Ok(Receipt { code, reply })
        }
        Err(e) => {
            let err = classify_smtp(&e, secrets.password.as_ref(), cfg.timeout);
            tracing::debug!(message_id = %msg.message_id, error = %err, "e-mail not sent");
            Err(err)
        }
    }
}

fn build_transport(cfg: &SmtpConfig, secrets: &SmtpSecrets) -> Result<SmtpTransport, SendError> {
    let tls_parameters = || {
        let mut b = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &secrets.ca {
            b = b.add_root_certificate(ca.clone());
        }
        b.build_rustls()
            .map_err(|e| config_error(format!("delivery.smtp: TLS setup: {e}")))
    };
    let tls = match cfg.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::Starttls => Tls::Required(tls_parameters()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = SmtpTransport::builder_dangerous(cfg.host.as_str())
        .port(cfg.port())
        .tls(tls)
        .timeout(Some(cfg.timeout));
    if let Some(name) = &cfg.helo_name {
        builder = builder.hello_name(ClientId::Domain(name.clone()));
    }
    if let Some(user) = &cfg.username {
        let Some(password) = &secrets.password else {
            return Err(config_error(
                "delivery.smtp.username is set but no password was resolved for it",
            ));
        };
        builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
    }
    Ok(builder.build())
}

fn build_email(cfg: &SmtpConfig, msg: &Outgoing) -> Result<Message, SendError> {
    let id = check_message_id(&msg.message_id)?;
    let from_address: Address = cfg
        .from
        .address
        .parse()
        .map_err(|e| config_error(format!("delivery.smtp.from.address: {e}")))?;
    let mut builder = Message::builder()
        .message_id(Some(format!("<arrears.{id}@{}>", from_address.domain())))
        .from(Mailbox::new(cfg.from.name.clone(), from_address))
        .to(recipient(&msg.to)?)
        .subject(msg.subject.as_str());
    for cc in &msg.cc {
        builder = builder.cc(recipient(cc)?);
    }
    if let Some(reply_to) = &cfg.reply_to {
        let mailbox = reply_to
            .parse()
            .map_err(|e| config_error(format!("delivery.smtp.reply_to: {e}")))?;
        builder = builder.reply_to(mailbox);
    }
    let alternative = msg
        .html
        .as_ref()
        .map(|html| MultiPart::alternative_plain_html(msg.text.clone(), html.clone()));
    let built = if msg.attachments.is_empty() {
        match alternative {
            Some(alternative) => builder.multipart(alternative),
            None => builder.singlepart(SinglePart::plain(msg.text.clone())),
        }
    } else {
        let mut mixed = match alternative {
            Some(alternative) => MultiPart::mixed().multipart(alternative),
            None => MultiPart::mixed().singlepart(SinglePart::plain(msg.text.clone())),
        };
        for a in &msg.attachments {
            let content_type = ContentType::parse(&a.content_type).map_err(|e| {
                permanent(format!(
                    "attachment {:?}: content type {:?}: {e}",
                    a.name, a.content_type
                ))
            })?;
            mixed = mixed.singlepart(
                MailAttachment::new(a.name.clone()).body(a.bytes.clone(), content_type),
            );
        }
        builder.multipart(mixed)
    };
    built.map_err(|e| permanent(format!("cannot build the e-mail: {e}")))
}

fn recipient(address: &str) -> Result<Mailbox, SendError> {
    address.trim().parse().map_err(|e| {
        permanent(format!(
            "recipient {address:?} is not an e-mail address: {e}"
        ))
    })
}

/// The id goes into a header on both channels, so it must not be able to carry
/// anything but itself.
fn check_message_id(id: &str) -> Result<&str, SendError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..");
    if ok {
        Ok(id)
    } else {
        Err(permanent(format!(
            "message id {id:?} is not usable as a Message-ID or Idempotency-Key"
        )))
    }
}

/// Auth replies are 530 (required), 534, 535 (refused), 538 (needs TLS): the
/// relay turned down our credentials, not this message.
fn classify_smtp(
    e: &lettre::transport::smtp::Error,
    password: Option<&Secret>,
    timeout: Duration,
) -> SendError {
    let reason = Secret::redact(password, format!("smtp: {e}"));
    if let Some(code) = e.status() {
        return match u16::from(code) {
            530 | 534 | 535 | 538 => config_error(reason),
            500..=599 => permanent(reason),
            _ => transient(reason),
        };
    }
    if e.is_timeout() || io_error_in(e, std::io::ErrorKind::WouldBlock) {
        // A socket read timeout surfaces as EAGAIN ("Resource temporarily
        // unavailable") on Unix, which lettre's is_timeout() does not count.
        transient(format!(
            "{reason} (no reply within {})",
            humantime::format_duration(timeout)
        ))
    } else if e.is_tls() || io_error_in(e, std::io::ErrorKind::InvalidData) {
        // Certificate not trusted, wrong name, or TLS spoken to a plaintext port.
        config_error(reason)
    } else if e.is_client() {
        // Lettre's own refusals: mostly the server lacking something the config
        // asks for (STARTTLS, an auth mechanism); non-ASCII addresses to a server
        // without SMTPUTF8 are about the message.
        if reason.contains("non-ascii") {
            permanent(reason)
        } else {
            config_error(reason)
        }
    } else {
        // Connection refused or reset, DNS failure, a garbled reply.
        transient(reason)
    }
}

/// Whether an `io::Error` of `kind` is in the chain. Lettre files both a failed
/// TLS handshake and a read timeout under "network error": rustls hands its
/// errors up as kind `InvalidData`, which a plain TCP socket never produces.
fn io_error_in(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    channel: &'a str,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    customer: &'a str,
    message_id: &'a str,
}

/// POSTs `msg` as JSON `{channel, to, subject, text, customer, message_id}` with
/// `Idempotency-Key: <message_id>` and, when configured, `Authorization: Bearer`.
/// `channel` is the name the receiver sees, e.g. `sms` or `portal`. `cc`, `html`
/// and attachments are not sent.
pub fn send_webhook(
    cfg: &WebhookConfig,
    secrets: &WebhookSecrets,
    msg: &Outgoing,
    channel: &str,
) -> Result<Receipt, SendError> {
    let id = check_message_id(&msg.message_id)?;
    if msg.to.trim().is_empty() {
        return Err(permanent("the message has no recipient"));
    }
    // Redirects are not followed: ureq would drop the token on the way, and a
    // moved endpoint belongs in the config.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("arrears/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.post(cfg.url.as_str()).header("Idempotency-Key", id);
    if let Some(token) = &secrets.token {
        request = request.header("Authorization", format!("Bearer {}", token.0));
    }
    let body = WebhookBody {
        channel,
        to: &msg.to,
        subject: &msg.subject,
        text: &msg.text,
        customer: &msg.customer,
        message_id: id,
    };
    let token = secrets.token.as_ref();
    let result = match request.send_json(&body) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut head = Vec::new();
            // Only the start of the body: enough to name the cause, never unbounded.
            let _ = response
                .body_mut()
                .as_reader()
                .take(512)
                .read_to_end(&mut head);
            let text: String = String::from_utf8_lossy(&head)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let reply = Secret::redact(
                token,
                if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {text}")
                },
            );
            classify_http(status, reply)
        }
        Err(e) => Err(classify_ureq(
            &e,
            Secret::redact(token, format!("webhook: {e}")),
        )),
    };
    match &result {
        Ok(r) => {
            tracing::debug!(message_id = %msg.message_id, channel, code = r.code, "webhook accepted")
        }
        Err(e) => {
            tracing::debug!(message_id = %msg.message_id, channel, error = %e, "webhook not sent")
        }
    }
    result
}

fn classify_http(status: u16, reply: String) -> Result<Receipt, SendError> {
    match status {
        200..=299 => Ok(Receipt {
            code: status,
            reply,
        }),
        300..=399 => Err(config_error(format!(
            "webhook redirects ({reply}); set url to the final address"
        ))),
        // The token is missing or refused: true of every message until fixed.
        401 | 403 | 407 => Err(config_error(format!("webhook refused the token ({reply})"))),
        // Rate limits and request timeouts are 4xx but pass.
        408 | 425 | 429 => Err(transient(format!("webhook {reply}"))),
        400..=499 => Err(permanent(format!("webhook {reply}"))),
        _ => Err(transient(format!("webhook {reply}"))),
    }
}

fn classify_ureq(e: &ureq::Error, reason: String) -> SendError {
    use ureq::Error as E;
    match e {
        E::BadUri(_)
        | E::Http(_)
        | E::Tls(_)
        | E::Pem(_)
        | E::Rustls(_)
        | E::RequireHttpsOnly(_)
        | E::TlsRequired
        | E::InvalidProxyUrl
        | E::ConnectProxyFailed(_) => config_error(reason),
        E::Json(_) => permanent(reason),
        // Timeouts, refused or reset connections, DNS, a reply that is not HTTP.
        _ => transient(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(json: serde_json::Value) -> SmtpConfig {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "host": "mail.example.com",
            "from": { "address": "collections@example.com", "name": "Example Collections" }
        })
    }

    fn with(mut v: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
        v[key] = value;
        v
    }

    #[test]
    fn defaults_and_durations() {
        let c = smtp(base());
        assert_eq!(c.security, SmtpSecurity::Starttls);
        assert_eq!(c.port(), 587);
        assert_eq!(c.timeout, Duration::from_secs(10));
        let c = smtp(with(
            with(base(), "security", "tls".into()),
            "timeout",
            "1m 30s".into(),
        ));
        assert_eq!(c.port(), 465);
        assert_eq!(c.timeout, Duration::from_secs(90));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_and_inline_secret_fields_are_refused() {
        let e = serde_json::from_value::<SmtpConfig>(with(base(), "password", "x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `password`"), "{e}");
        let e = serde_json::from_value::<WebhookConfig>(
            serde_json::json!({ "url": "https://h.example", "token": "x" }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `token`"), "{e}");
        assert!(
            serde_json::from_value::<SmtpConfig>(with(base(), "timeout", "soon".into())).is_err()
        );
    }

    #[test]
    fn validation_names_the_field() {
        let field = |v: serde_json::Value| smtp(v).validate().unwrap_err().field;
        assert_eq!(field(with(base(), "host", "".into())), "smtp.host");
        assert_eq!(field(with(base(), "port", 0.into())), "smtp.port");
        assert_eq!(field(with(base(), "timeout", "0s".into())), "smtp.timeout");
        assert_eq!(field(with(base(), "username", "u".into())), "smtp.username");
        assert_eq!(
            field(with(base(), "password_env", "P".into())),
            "smtp.username"
        );
        let both = with(
            with(
                with(base(), "username", "u".into()),
                "password_env",
                "P".into(),
            ),
            "password_file",
            "/p".into(),
        );
        assert_eq!(field(both), "smtp.password_env");
        let clear = with(
            with(
                with(base(), "username", "u".into()),
                "password_env",
                "P".into(),
            ),
            "security",
            "none".into(),
        );
        assert_eq!(field(clear.clone()), "smtp.security");
        smtp(with(clear, "host", "127.0.0.1".into()))
            .validate()
            .unwrap();
        assert_eq!(
            field(with(
                base(),
                "from",
                serde_json::json!({ "address": "nope" })
            )),
            "smtp.from.address"
        );
        assert_eq!(
            field(with(base(), "reply_to", "a b c".into())),
            "smtp.reply_to"
        );
        assert_eq!(
            field(with(base(), "helo_name", "a b".into())),
            "smtp.helo_name"
        );
        let ca = with(
            with(base(), "ca_file", "/ca.pem".into()),
            "security",
            "none".into(),
        );
        assert_eq!(field(ca), "smtp.ca_file");
        let e = smtp(with(base(), "port", 0.into())).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "delivery.smtp.port: must be between 1 and 65535"
        );

        let hook = |v: serde_json::Value| {
            serde_json::from_value::<WebhookConfig>(v)
                .unwrap()
                .validate()
        };
        let field = |v| hook(v).unwrap_err().field;
        assert_eq!(
            field(serde_json::json!({ "url": "ftp://h/x" })),
            "webhook.url"
        );
        assert_eq!(
            field(serde_json::json!({ "url": "https://u:p@h/x" })),
            "webhook.url"
        );
        assert_eq!(
            field(serde_json::json!({ "url": "http://sms.example/x", "token_env": "T" })),
            "webhook.url"
        );
        assert_eq!(
            field(
                serde_json::json!({ "url": "https://h/x", "token_env": "T", "token_file": "/t" })
            ),
            "webhook.token_env"
        );
        hook(serde_json::json!({ "url": "http://127.0.0.1:9/x", "token_env": "T" })).unwrap();
        hook(serde_json::json!({ "url": "https://sms.example/x", "token_file": "/t" })).unwrap();
    }

    #[test]
    fn resolve_names_the_source_not_the_value() {
        let c = smtp(with(
            with(base(), "username", "u".into()),
            "password_env",
            "ARREARS_DELIVERY_UNIT_SURELY_UNSET".into(),
        ));
        let e = c.resolve().unwrap_err();
        assert!(matches!(e, SendError::Config { .. }));
        assert!(
            e.reason().contains("ARREARS_DELIVERY_UNIT_SURELY_UNSET"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret with space \n").unwrap();
        let c = smtp(with(
            with(base(), "username", "u".into()),
            "password_file",
            file.to_str().unwrap().into(),
        ));
        #[cfg(unix)]
        {
            // As the API's token files: one that other users can read is refused.
            let e = c.resolve().unwrap_err();
            assert!(matches!(e, SendError::Config { .. }));
            assert!(
                e.reason().starts_with("delivery.smtp.password_file: ")
                    && e.reason().contains("chmod 600"),
                "{e}"
            );
            assert!(!e.reason().contains("s3cret"), "{e}");
        }
        arrears_secret::write_private(&file, "s3cret with space \n").unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.password.as_ref().unwrap().0, "s3cret with space ");
        let debug = format!("{s:?} {c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");

        std::fs::write(&file, "\n").unwrap();
        let e = c.resolve().unwrap_err();
        assert!(e.reason().contains("is empty"), "{e}");
        let missing = dir.path().join("none");
        let c = smtp(with(
            with(base(), "username", "u".into()),
            "password_file",
            missing.to_str().unwrap().into(),
        ));
        assert!(c.resolve().unwrap_err().reason().contains("cannot read"));

        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let c = smtp(with(base(), "ca_file", ca.to_str().unwrap().into()));
        assert!(c
            .resolve()
            .unwrap_err()
            .reason()
            .contains("no PEM certificate"));

        let tok = dir.path().join("tok");
        std::fs::write(&tok, "two words").unwrap();
        let w: WebhookConfig = serde_json::from_value(
            serde_json::json!({ "url": "https://h/x", "token_file": tok.to_str().unwrap() }),
        )
        .unwrap();
        #[cfg(unix)]
        {
            let e = w.resolve().unwrap_err().reason().to_string();
            assert!(
                e.starts_with("delivery.webhook.token_file: ") && e.contains("chmod 600"),
                "{e}"
            );
        }
        arrears_secret::write_private(&tok, "two words").unwrap();
        let e = w.resolve().unwrap_err();
        assert!(!e.to_string().contains("two words"), "{e}");
    }

    #[test]
    fn bad_messages_are_permanent_before_any_connection() {
        let c = smtp(base());
        let msg = |to: &str, id: &str| Outgoing {
            message_id: id.into(),
            to: to.into(),
            text: "t".into(),
            ..Outgoing::default()
        };
        for (to, id) in [
            ("not an address", "m1"),
            ("", "m1"),
            ("a@b.example", ""),
            ("a@b.example", "x>\r\nBcc: evil@example.com"),
            ("a@b.example", "..a"),
        ] {
            let e = build_email(&c, &msg(to, id)).unwrap_err();
            assert!(
                matches!(e, SendError::Permanent { .. }),
                "{to:?} {id:?}: {e}"
            );
        }
        let mut m = msg("a@b.example", "m1");
        m.cc.push("nope".into());
        assert!(matches!(
            build_email(&c, &m),
            Err(SendError::Permanent { .. })
        ));
        let mut m = msg("Kunde <a@b.example>", "m-1.x_2");
        m.attachments.push(Attachment {
            name: "a.html".into(),
            content_type: "no type".into(),
            bytes: vec![],
        });
        assert!(matches!(
            build_email(&c, &m),
            Err(SendError::Permanent { .. })
        ));
        m.attachments[0].content_type = "text/html; charset=utf-8".into();
        let raw = String::from_utf8(build_email(&c, &m).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <arrears.m-1.x_2@example.com>"),
            "{raw}"
        );
    }

    #[test]
    fn http_statuses() {
        let kind = |s| match classify_http(s, String::new()) {
            Ok(_) => "ok",
            Err(SendError::Transient { .. }) => "transient",
            Err(SendError::Permanent { .. }) => "permanent",
            Err(SendError::Config { .. }) => "config",
        };
        assert_eq!(kind(200), "ok");
        assert_eq!(kind(202), "ok");
        assert_eq!(kind(301), "config");
        assert_eq!(kind(401), "config");
        assert_eq!(kind(404), "permanent");
        assert_eq!(kind(422), "permanent");
        assert_eq!(kind(429), "transient");
        assert_eq!(kind(500), "transient");
        assert_eq!(kind(503), "transient");
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(
            Secret::redact(Some(&s), "echo hunter2 back".into()),
            "echo [redacted] back"
        );
        let w = WebhookSecrets { token: Some(s) };
        assert!(!format!("{w:?}").contains("hunter2"));
    }
}
