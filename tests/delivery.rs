//! `delivery` against real servers on 127.0.0.1: aiosmtpd (`python/smtp_sink.py`)
//! for e-mail, with and without AUTH and TLS, and a loopback HTTP server with
//! canned answers for the webhook.

mod common;

use arrears_store::rusqlite;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrears::delivery::{
    send_email, send_webhook, Attachment, Outgoing, SendError, SmtpConfig, WebhookConfig,
};
use common::python;
use serde_json::{json, Value};

/// Compiled in, so the test finds the script wherever the test binary runs.
const SINK_SCRIPT: &str = include_str!("python/smtp_sink.py");

/// A running `smtp_sink.py`; killed on drop, also when an assertion fails.
struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    log: common::Log,
}

impl Sink {
    fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, SINK_SCRIPT).unwrap();
        std::fs::create_dir(dir.path().join("inbox")).unwrap();
        let mut child = Command::new(python())
            .arg(&script)
            .arg(dir.path().join("inbox"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
        let stdout = child.stdout.take().unwrap();
        let log = common::Log::capture(child.stderr.take().unwrap());
        let mut sink = Sink {
            child,
            port: 0,
            dir,
            log,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the SMTP sink did not report its port within 60 s");
        sink.port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the SMTP sink printed {line:?}, not a port (is aiosmtpd installed for {}?)",
                python()
            )
        });
        sink
    }

    /// Every message the sink accepted, oldest first.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("inbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        });
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log.dump_if_failing("SMTP sink");
    }
}

fn smtp(port: u16, extra: Value) -> SmtpConfig {
    let mut cfg = json!({
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": { "address": "collections@example.test", "name": "Example Collections" },
        "reply_to": "Accounts <accounts@example.test>",
        "timeout": "5s",
        "helo_name": "arrears.test",
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    serde_json::from_value(cfg).unwrap()
}

const LETTER: &str =
    "<html><body><h1>Mahnung</h1><p>Rechnung 2026-17: 1.250,00 EUR</p></body></html>";

fn letter(to: &str) -> Outgoing {
    Outgoing {
        message_id: "ob-1042".into(),
        customer: "C-0042".into(),
        to: to.into(),
        cc: vec!["Collection Manager <manager@example.test>".into()],
        subject: "Zahlungserinnerung – Rechnung 2026-17".into(),
        text: "Sehr geehrte Frau Müller,\ndie Rechnung 2026-17 ist überfällig.\n".into(),
        html: Some(
            "<p>Sehr geehrte Frau Müller,</p><p>die Rechnung ist <b>überfällig</b>.</p>".into(),
        ),
        attachments: vec![Attachment {
            name: "mahnung-2026-17.html".into(),
            content_type: "text/html; charset=utf-8".into(),
            bytes: LETTER.as_bytes().to_vec(),
        }],
    }
}

fn kind(r: &Result<arrears::delivery::Receipt, SendError>) -> &'static str {
    match r {
        Ok(_) => "sent",
        Err(SendError::Transient { .. }) => "transient",
        Err(SendError::Permanent { .. }) => "permanent",
        Err(SendError::Config { .. }) => "config",
    }
}

fn reason(r: &Result<arrears::delivery::Receipt, SendError>) -> String {
    match r {
        Ok(receipt) => format!("sent: {receipt:?}"),
        Err(e) => e.to_string(),
    }
}

/// A loopback port that refuses connections: bound once, then freed.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn email_arrives_once_with_both_parts_cc_attachment_and_message_id() {
    let sink = Sink::start(&[]);
    let cfg = smtp(sink.port, json!({}));
    let secrets = cfg.resolve().unwrap();

    let receipt = send_email(&cfg, &secrets, &letter("Frau Müller <debtor@example.test>")).unwrap();
    assert_eq!(receipt.code, 250, "{receipt:?}");
    assert!(receipt.reply.contains("queued as SINK1"), "{receipt:?}");

    let got = sink.messages();
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = &got[0];
    assert_eq!(m["mail_from"], "collections@example.test");
    assert_eq!(
        m["rcpt_tos"],
        json!(["debtor@example.test", "manager@example.test"])
    );
    let h = &m["headers"];
    assert_eq!(h["From"], "Example Collections <collections@example.test>");
    assert_eq!(h["To"], "Frau Müller <debtor@example.test>");
    assert_eq!(h["Cc"], "Collection Manager <manager@example.test>");
    assert_eq!(h["Reply-To"], "Accounts <accounts@example.test>");
    assert_eq!(h["Subject"], "Zahlungserinnerung – Rechnung 2026-17");
    assert_eq!(h["Message-ID"], "<arrears.ob-1042@example.test>");
    assert!(m["data"]
        .as_str()
        .unwrap()
        .contains("Message-ID: <arrears.ob-1042@example.test>\r\n"));

    let parts = m["parts"].as_array().unwrap();
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "text/html"
        ]
    );
    assert!(
        parts[2]["content"]
            .as_str()
            .unwrap()
            .contains("Frau Müller,\n")
            || parts[2]["content"]
                .as_str()
                .unwrap()
                .contains("Frau Müller,\r\n")
    );
    assert!(parts[3]["content"]
        .as_str()
        .unwrap()
        .contains("<b>überfällig</b>"));
    assert_eq!(parts[4]["disposition"], "attachment");
    assert_eq!(parts[4]["filename"], "mahnung-2026-17.html");
    assert_eq!(parts[4]["content"], LETTER);
}

#[test]
fn refusals_and_outages_are_classified() {
    let sink = Sink::start(&[]);
    let cfg = smtp(sink.port, json!({}));
    let secrets = cfg.resolve().unwrap();
    let send = |cfg: &SmtpConfig, to: &str| send_email(cfg, &secrets, &letter(to));

    let r = send(&cfg, "bounce@example.test");
    assert_eq!(kind(&r), "permanent", "{}", reason(&r));
    assert!(reason(&r).contains("550"), "{}", reason(&r));

    let r = send(&cfg, "busy@example.test");
    assert_eq!(kind(&r), "transient", "{}", reason(&r));
    assert!(reason(&r).contains("451"), "{}", reason(&r));

    let r = send(&cfg, "not an address");
    assert_eq!(kind(&r), "permanent", "{}", reason(&r));

    let mut with_bad_cc = letter("debtor@example.test");
    with_bad_cc.cc.push("bounce-manager@example.test".into());
    let r = send_email(&cfg, &secrets, &with_bad_cc);
    assert_eq!(kind(&r), "permanent", "{}", reason(&r));
    assert!(sink.messages().is_empty(), "nothing may have been accepted");

    let r = send(&smtp(closed_port(), json!({})), "debtor@example.test");
    assert_eq!(kind(&r), "transient", "{}", reason(&r));

    // Accepts TCP connections (the kernel does) but never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let quick = smtp(
        silent.local_addr().unwrap().port(),
        json!({ "timeout": "500ms" }),
    );
    let started = Instant::now();
    let r = send(&quick, "debtor@example.test");
    assert_eq!(kind(&r), "transient", "{}", reason(&r));
    assert!(
        reason(&r).contains("no reply within 500ms"),
        "{}",
        reason(&r)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // TLS settings against a plaintext server are a config problem.
    let r = send(
        &smtp(sink.port, json!({ "security": "starttls" })),
        "debtor@example.test",
    );
    assert_eq!(kind(&r), "config", "{}", reason(&r));
    let r = send(
        &smtp(sink.port, json!({ "security": "tls" })),
        "debtor@example.test",
    );
    assert_eq!(kind(&r), "config", "{}", reason(&r));

    assert!(sink.messages().is_empty());
}

#[test]
fn auth_with_password_env_and_file_never_leaks_the_password() {
    const RIGHT: &str = "Right-Pa55word-0815";
    const WRONG: &str = "Wrong-Pa55word-4711";
    let sink = Sink::start(&["--auth", &format!("clerk:{RIGHT}")]);

    // Edition 2021: set_var is safe, and std serialises it with every env read.
    // A name no other test reads, so no test sees it change.
    std::env::set_var("ARREARS_DELIVERY_TEST_SMTP_PASSWORD", RIGHT);
    let cfg = smtp(
        sink.port,
        json!({ "username": "clerk", "password_env": "ARREARS_DELIVERY_TEST_SMTP_PASSWORD" }),
    );
    let secrets = cfg.resolve().unwrap();
    let r = send_email(&cfg, &secrets, &letter("debtor@example.test"));
    assert_eq!(kind(&r), "sent", "{}", reason(&r));
    assert_eq!(sink.messages().len(), 1);
    let shown = format!("{cfg:?} {secrets:?} {:?}", r);
    assert!(!shown.contains(RIGHT), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smtp-password");
    common::write_secret(&file, &format!("{WRONG}\n"));
    let cfg = smtp(
        sink.port,
        json!({ "username": "clerk", "password_file": file }),
    );
    let secrets = cfg.resolve().unwrap();
    let r = send_email(&cfg, &secrets, &letter("debtor@example.test"));
    // Refused credentials fail every message alike: the channel's config, not this message.
    assert_eq!(kind(&r), "config", "{}", reason(&r));
    assert!(reason(&r).contains("535"), "{}", reason(&r));
    let shown = format!("{} {:?} {cfg:?} {secrets:?}", reason(&r), r);
    assert!(!shown.contains(WRONG) && !shown.contains(RIGHT), "{shown}");

    let anonymous = smtp(sink.port, json!({}));
    let r = send_email(
        &anonymous,
        &anonymous.resolve().unwrap(),
        &letter("debtor@example.test"),
    );
    assert_eq!(kind(&r), "config", "{}", reason(&r));
    assert!(reason(&r).contains("530"), "{}", reason(&r));

    let unset = smtp(
        sink.port,
        json!({ "username": "clerk", "password_env": "ARREARS_DELIVERY_TEST_SURELY_UNSET" }),
    );
    let e = unset.resolve().unwrap_err();
    assert!(matches!(e, SendError::Config { .. }), "{e}");
    assert!(
        e.to_string().contains("ARREARS_DELIVERY_TEST_SURELY_UNSET"),
        "{e}"
    );

    assert_eq!(sink.messages().len(), 1);
}

/// A private CA and a certificate for 127.0.0.1 signed by it (rcgen, so the test
/// needs no openssl tool on the machine).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn starttls_and_implicit_tls_trust_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let starttls = Sink::start(&["--tls-cert", cert, "--tls-key", key]);
    let cfg = smtp(
        starttls.port,
        json!({ "security": "starttls", "ca_file": ca }),
    );
    let r = send_email(
        &cfg,
        &cfg.resolve().unwrap(),
        &letter("debtor@example.test"),
    );
    assert_eq!(kind(&r), "sent", "{}", reason(&r));

    // The public roots alone do not know the private CA.
    let untrusted = smtp(starttls.port, json!({ "security": "starttls" }));
    let r = send_email(
        &untrusted,
        &untrusted.resolve().unwrap(),
        &letter("debtor@example.test"),
    );
    assert_eq!(kind(&r), "config", "{}", reason(&r));

    // The sink insists on STARTTLS: 530 before MAIL FROM.
    let plain = smtp(starttls.port, json!({}));
    let r = send_email(
        &plain,
        &plain.resolve().unwrap(),
        &letter("debtor@example.test"),
    );
    assert_eq!(kind(&r), "config", "{}", reason(&r));
    assert_eq!(starttls.messages().len(), 1);

    let implicit = Sink::start(&["--tls-cert", cert, "--tls-key", key, "--implicit-tls"]);
    let cfg = smtp(implicit.port, json!({ "security": "tls", "ca_file": ca }));
    let r = send_email(
        &cfg,
        &cfg.resolve().unwrap(),
        &letter("debtor@example.test"),
    );
    assert_eq!(kind(&r), "sent", "{}", reason(&r));
    assert_eq!(implicit.messages().len(), 1);
    assert_eq!(
        implicit.messages()[0]["headers"]["Message-ID"],
        "<arrears.ob-1042@example.test>"
    );
}

enum Answer {
    Status(u16, String),
    Garbage,
    Silent(Duration),
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Answers one connection per entry of `answers`, in order, and hands each
/// request it read to the test.
fn canned_server(answers: Vec<Answer>) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        for answer in answers {
            // Bounded, so the thread ends even if the test stopped calling.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let Some(request) = read_request(&mut stream) else {
                continue;
            };
            let _ = tx.send(request);
            match answer {
                Answer::Status(code, body) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} Canned\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Answer::Garbage => {
                    let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n");
                }
                Answer::Silent(hold) => std::thread::sleep(hold),
            }
        }
    });
    (url, rx)
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut request = Request {
        head,
        body: data[head_end..].to_vec(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while request.body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        request.body.extend_from_slice(&buf[..n]);
    }
    Some(request)
}

#[test]
fn webhook_outcomes_follow_the_status() {
    const TOKEN: &str = "sms-gateway-token-7f3a9c";
    let answers = vec![
        Answer::Status(202, r#"{"id": "SM-1"}"#.into()),
        Answer::Status(404, r#"{"error": "unknown number"}"#.into()),
        Answer::Status(503, "down for maintenance".into()),
        Answer::Status(429, "slow down".into()),
        Answer::Status(401, "bad token".into()),
        Answer::Status(400, format!("you sent Bearer {TOKEN}")),
        Answer::Garbage,
        Answer::Silent(Duration::from_secs(8)),
    ];
    let (url, requests) = canned_server(answers);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    common::write_secret(&token_file, &format!("{TOKEN}\n"));
    let cfg: WebhookConfig = serde_json::from_value(json!({
        "url": url, "token_file": token_file, "timeout": "2s"
    }))
    .unwrap();
    let secrets = cfg.resolve().unwrap();
    let msg = Outgoing {
        message_id: "ob-2001".into(),
        customer: "C-0042".into(),
        to: "+4915112345678".into(),
        subject: "Zahlungserinnerung".into(),
        text: "Rechnung 2026-17 ist überfällig.".into(),
        ..Outgoing::default()
    };
    let next = || {
        requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the webhook server got no request")
    };
    let mut shown = String::new();

    let r = send_webhook(&cfg, &secrets, &msg, "sms");
    assert_eq!(kind(&r), "sent", "{}", reason(&r));
    let receipt = r.as_ref().unwrap();
    assert_eq!(receipt.code, 202);
    assert!(receipt.reply.contains("SM-1"), "{receipt:?}");
    let req = next();
    assert!(
        req.head.starts_with("POST /notify HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(req.header("idempotency-key"), Some("ob-2001"));
    assert_eq!(
        req.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        json!({
            "channel": "sms",
            "to": "+4915112345678",
            "subject": "Zahlungserinnerung",
            "text": "Rechnung 2026-17 ist überfällig.",
            "customer": "C-0042",
            "message_id": "ob-2001",
        })
    );

    for (expected, needle) in [
        ("permanent", "unknown number"),
        ("transient", "503"),
        ("transient", "429"),
        ("config", "401"),
        ("permanent", "[redacted]"),
        ("transient", ""),
    ] {
        let r = send_webhook(&cfg, &secrets, &msg, "sms");
        assert_eq!(kind(&r), expected, "{}", reason(&r));
        assert!(reason(&r).contains(needle), "{}", reason(&r));
        shown += &format!("{} {r:?}\n", reason(&r));
        next();
    }

    let started = Instant::now();
    let r = send_webhook(&cfg, &secrets, &msg, "portal");
    assert_eq!(kind(&r), "transient", "{}", reason(&r));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&next().body).unwrap()["channel"],
        "portal"
    );
    shown += &reason(&r);

    let nobody = WebhookConfig {
        url: format!("http://127.0.0.1:{}/notify", closed_port()),
        ..cfg.clone()
    };
    let r = send_webhook(&nobody, &secrets, &msg, "sms");
    assert_eq!(kind(&r), "transient", "{}", reason(&r));
    shown += &format!("{} {r:?} {cfg:?} {secrets:?}", reason(&r));

    assert!(!shown.contains(TOKEN), "{shown}");
}

/// The `arrears` binary on a temporary database and the shipped rules.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(smtp_port: u16) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(
            &arrears_test_support::repo_root().join("rules"),
            &dir.path().join("rules"),
        );
        std::fs::write(
            dir.path().join("arrears.yaml"),
            format!(
                "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n    security: none\n    \
                 from: {{ address: collections@acme.example, name: ACME Collections }}\n    timeout: 5s\n"
            ),
        )
        .unwrap();
        Cli { dir }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(args)
            .env("ARREARS_DB", self.dir.path().join("arrears.db"))
            .env("ARREARS_RULES", self.dir.path().join("rules"))
            .env("ARREARS_CONFIG", self.dir.path().join("arrears.yaml"))
            .arg("--config")
            .arg(self.dir.path().join("arrears.yaml"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "arrears {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("arrears.db")).unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// One business day: the run, then the outbox at 10:00 UTC.
    fn day(&self, d: &str) -> Value {
        self.ok(&["run", "--as-of", d]);
        serde_json::from_str(&self.ok(&[
            "outbox",
            "send",
            "--now",
            &format!("{d}T10:00:00Z"),
            "--json",
        ]))
        .unwrap()
    }
}

fn text_of(m: &Value) -> String {
    m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["content_type"] == "text/plain")
        .map(|p| p["content"].as_str().unwrap().to_string())
        .collect()
}

/// The standard ladder over a month of real e-mail: the first reminder, the second
/// with its fee, a resend 14 days later charging no second fee; a bouncing address
/// falls back to a letter; an SMTP server that is down leaves the step unsent and
/// retried; an opted-out channel is never used; a late-night e-mail to a US customer
/// waits for the morning.
#[test]
fn an_escalation_sequence_goes_out_by_real_email_with_resends_fallbacks_and_the_guard() {
    let sink = Sink::start(&[]);
    let cli = Cli::new(sink.port);
    let csv = cli.dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency,country\n\
         item,a1,ACME_DE,C1,Weber GmbH,INV-A1,2026-09-20,2026-10-20,500.00,EUR,DE\n\
         item,a2,ACME_DE,C1,Weber GmbH,INV-A2,2026-09-21,2026-10-21,250.00,EUR,DE\n\
         item,b1,ACME_DE,C2,Bounce AG,INV-B1,2026-09-20,2026-10-20,900.00,EUR,DE\n\
         item,c1,ACME_DE,C3,Papier KG,INV-C1,2026-09-20,2026-10-20,300.00,EUR,DE\n",
    )
    .unwrap();
    cli.ok(&["import", "csv", csv.to_str().unwrap()]);
    cli.ok(&[
        "customer",
        "contact",
        "ACME_DE/C1",
        "--email",
        "buchhaltung@weber.example",
    ]);
    // C2 and C3 have postal addresses, so their letters can go.
    cli.ok(&[
        "customer",
        "contact",
        "ACME_DE/C2",
        "--email",
        "bounce@bounce.example",
        "--street",
        "Ringstr. 4",
        "--postal-code",
        "50667",
        "--city",
        "Köln",
    ]);
    // C3 opted out of e-mail: it is never used.
    let out = cli.ok(&[
        "customer",
        "contact",
        "ACME_DE/C3",
        "--email",
        "info@papier.example",
        "--opt-out",
        "email",
        "--address",
        "z. Hd. Buchhaltung",
        "--street",
        "Mühlweg 12",
        "--postal-code",
        "80331",
        "--city",
        "München",
    ]);
    assert!(
        out.contains("letters to: Papier KG, z. Hd. Buchhaltung, Mühlweg 12, 80331 München, DE"),
        "{out}"
    );

    // 10 days overdue (7 + 3 tolerance): the first reminder, both invoices in one e-mail.
    let s = cli.day("2026-10-30");
    assert_eq!(s["sent"], 3, "{s}");
    let got = sink.messages();
    assert_eq!(got.len(), 1, "the bounce never reached the inbox: {got:#?}");
    assert_eq!(got[0]["rcpt_tos"], json!(["buchhaltung@weber.example"]));
    let t = text_of(&got[0]);
    assert!(t.contains("INV-A1") && t.contains("INV-A2"), "{t}");
    // The bounce and the opt-out became letters, stored for printing; their steps
    // count as sent.
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM messages WHERE channel = 'letter' AND status = 'sent'"),
        2
    );
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM documents WHERE kind = 'letter'"),
        2
    );
    let to: String = cli
        .db()
        .query_row(
            "SELECT m.recipient FROM messages m JOIN customers c ON c.id = m.customer_id
             WHERE c.code = 'C2' AND m.channel = 'letter'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(to, "Bounce AG\nRingstr. 4\n50667 Köln\nDE");
    assert_eq!(
        cli.count(
            "SELECT COUNT(*) FROM customer_events WHERE kind = 'First payment reminder sent'"
        ),
        3
    );
    let refused: String = cli
        .db()
        .query_row(
            "SELECT m.last_error FROM messages m JOIN customers c ON c.id = m.customer_id
             WHERE c.code = 'C3' AND m.channel = 'email'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(refused.contains("opted out"), "{refused}");

    // 24 days: the second reminder, with its 5.00 fee per invoice that reached it
    // itemised. INV-A2 (23 days) is still at the first reminder: named, no fee yet.
    cli.day("2026-11-13");
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    let t = text_of(&got[1]);
    assert!(t.contains("5.00"), "the fee is itemised: {t}");
    assert!(t.contains("INV-A2"), "{t}");
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM fees"),
        3,
        "INV-A1, INV-B1, INV-C1 at the second reminder"
    );

    // A week later nothing is due (INV-A2 reached the second reminder, but goes out
    // with the next step, 14 days after the last); then the level is resent,
    // but the SMTP server is down that morning: nothing recorded as sent.
    let s = cli.day("2026-11-20");
    assert_eq!(s["sent"], 0, "{s}");
    drop(sink);
    let s = cli.day("2026-11-27");
    assert_eq!(
        (s["sent"].as_u64(), s["retried"].as_u64()),
        (Some(1), Some(2)),
        "only C3's letter goes: {s}"
    );
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM escalations e JOIN customers c ON c.id = e.customer_id WHERE c.code = 'C1' AND e.as_of = '2026-11-27' AND e.status = 'pending'"),
        1,
        "the resend waits for the server"
    );
    let sink = Sink::start(&[]);
    std::fs::write(
        cli.dir.path().join("arrears.yaml"),
        format!(
            "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    \
             from: {{ address: collections@acme.example, name: ACME Collections }}\n    timeout: 5s\n",
            sink.port
        ),
    )
    .unwrap();
    let s: Value = serde_json::from_str(&cli.ok(&[
        "outbox",
        "send",
        "--now",
        "2026-11-27T10:05:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (s["sent"].as_u64(), s["fell_back"].as_u64()),
        (Some(2), Some(1)),
        "retried a minute later: C1's delivered, C2's bounced onto paper: {s}"
    );
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM fees"),
        4,
        "the resend charges no fee twice; INV-A2 pays its own second-reminder fee once"
    );
    assert!(text_of(&got[0]).contains("5.00"));

    // Every delivery is in the audit log, whose chain holds.
    assert_eq!(
        cli.count("SELECT COUNT(*) FROM audit WHERE action = 'message.sent'"),
        cli.count("SELECT COUNT(*) FROM messages WHERE status = 'sent'")
    );
    cli.ok(&["audit", "verify"]);
}

/// The compliance guard: US rules keep e-mail within local hours; at 03:00 in
/// New York the reminder waits, with the reason, and goes at the next allowed time.
#[test]
fn a_contact_outside_local_hours_is_deferred_with_its_reason() {
    let sink = Sink::start(&[]);
    let cli = Cli::new(sink.port);
    let csv = cli.dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency,country,email\n\
         item,u1,ACME_US,U1,Hudson Supply Inc,INV-U1,2026-10-10,2026-11-10,800.00,USD,US,ap@hudson.example\n",
    )
    .unwrap();
    cli.ok(&["import", "csv", csv.to_str().unwrap()]);
    cli.ok(&["run", "--as-of", "2026-11-23"]);
    // 08:00 UTC = 03:00 in New York.
    let s: Value = serde_json::from_str(&cli.ok(&[
        "outbox",
        "send",
        "--now",
        "2026-11-23T08:00:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (s["sent"].as_u64(), s["deferred"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    let (reason, next): (String, String) = cli
        .db()
        .query_row(
            "SELECT defer_reason, next_attempt FROM messages WHERE status = 'deferred'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(reason.contains("outside contact hours"), "{reason}");
    assert!(next.as_str() > "2026-11-23T08:00:00Z", "{next}");
    assert!(sink.messages().is_empty());
    let s: Value =
        serde_json::from_str(&cli.ok(&["outbox", "send", "--now", &next, "--json"])).unwrap();
    assert_eq!(s["sent"], 1, "sent at the moment the guard named: {s}");
    assert_eq!(sink.messages().len(), 1);
}

/// The daemon sends by itself: its first run decides the reminder, the outbox
/// delivers it to the SMTP server without anyone asking, and the metrics count it.
#[test]
fn the_daemon_delivers_after_its_run() {
    let sink = Sink::start(&[]);
    let dir = common::Daemon::prepare();
    let cfg = dir.path().join("arrears.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    \
         from: {{ address: collections@acme.example }}\n    timeout: 5s\n",
        sink.port
    ));
    std::fs::write(&cfg, text).unwrap();
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency,country,email\n\
         item,d1,ACME_DE,D1,Daemon GmbH,INV-D1,2026-10-10,2026-11-10,640.00,EUR,DE,ap@daemon.example\n",
    )
    .unwrap();
    common::arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = common::Daemon::start(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.messages().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no e-mail from the daemon in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = sink.messages();
    assert_eq!(got[0]["rcpt_tos"], json!(["ap@daemon.example"]));
    assert!(text_of(&got[0]).contains("INV-D1"));
    let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
    let sent: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM escalations WHERE status = 'sent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sent, 1);
    // The same over gRPC: the message, and contact preferences checked and stored.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use arrears::server::pb;
        let mut c = pb::correspondence_client::CorrespondenceClient::with_interceptor(
            d.channel().await,
            common::with_token(common::SUP),
        );
        let list = c
            .list_messages(pb::ListMessagesRequest {
                customer: "ACME_DE/D1".into(),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].status.as_str(), list[0].channel.as_str()),
            ("sent", "email")
        );
        let e = c
            .set_contact_preferences(pb::ContactPreferencesRequest {
                customer: "ACME_DE/D1".into(),
                set_opt_outs: true,
                opt_outs: vec!["pigeon".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let p = c
            .set_contact_preferences(pb::ContactPreferencesRequest {
                customer: "ACME_DE/D1".into(),
                set_opt_outs: true,
                opt_outs: vec!["email".into()],
                do_not_contact: "false".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (p.email.as_str(), p.opt_outs),
            ("ap@daemon.example", vec!["email".to_string()])
        );
    });
    // And from the CLI against the daemon.
    let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args([
            "--remote",
            &d.grpc,
            "outbox",
            "list",
            "--customer",
            "ACME_DE/D1",
        ])
        .env("ARREARS_TOKEN", common::SUP)
        .env_remove("ARREARS_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(" sent "),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.scrape();
        if m.contains("arrears_messages_total{result=\"sent\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SMS through the webhook from the outbox: a number the gateway does not know (404)
/// falls back to e-mail; a known one is delivered with the JSON the gateway expects.
#[test]
fn sms_goes_through_the_webhook_and_an_unknown_number_falls_back_to_email() {
    let sink = Sink::start(&[]);
    let cli = Cli::new(sink.port);
    let (url, requests) = canned_server(vec![
        Answer::Status(404, r#"{"error": "unknown number"}"#.into()),
        Answer::Status(202, r#"{"id": "SM-7"}"#.into()),
    ]);
    std::fs::write(
        cli.dir.path().join("arrears.yaml"),
        format!(
            "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    \
             from: {{ address: collections@acme.example }}\n    timeout: 5s\n  \
             webhook:\n    url: {url}\n    timeout: 5s\n",
            sink.port
        ),
    )
    .unwrap();
    // The first reminder goes by SMS in this rule set.
    let esc = cli.dir.path().join("rules/escalation.yaml");
    let text = std::fs::read_to_string(&esc).unwrap().replacen(
        "template: reminder_1",
        "template: reminder_1\n        channel: sms",
        1,
    );
    let text = text.replacen(
        "        overdue_days: 7\n        channel: email\n",
        "        overdue_days: 7\n",
        1,
    );
    std::fs::write(&esc, text).unwrap();
    let csv = cli.dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency,country,email,phone\n\
         item,s1,ACME_DE,S1,Alpha GmbH,INV-S1,2026-09-20,2026-10-20,300.00,EUR,DE,ap@alpha.example,+4915100000001\n\
         item,s2,ACME_DE,S2,Beta GmbH,INV-S2,2026-09-20,2026-10-20,400.00,EUR,DE,ap@beta.example,+4915100000002\n",
    )
    .unwrap();
    cli.ok(&["import", "csv", csv.to_str().unwrap()]);
    cli.ok(&["run", "--as-of", "2026-10-30"]);
    // A weekday morning in Berlin: SMS may go.
    let s: Value = serde_json::from_str(&cli.ok(&[
        "outbox",
        "send",
        "--now",
        "2026-10-30T09:00:00Z",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (s["sent"].as_u64(), s["fell_back"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    let first = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        (body["channel"].as_str(), body["to"].as_str()),
        (Some("sms"), Some("+4915100000001"))
    );
    assert!(first.header("Idempotency-Key").is_some());
    let got = sink.messages();
    assert_eq!(got.len(), 1, "S1 by e-mail after the 404");
    assert_eq!(got[0]["rcpt_tos"], json!(["ap@alpha.example"]));
    let receipt: String = cli
        .db()
        .query_row(
            "SELECT receipt FROM messages WHERE channel = 'sms' AND status = 'sent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(receipt.contains("202"), "{receipt}");
}

/// A demo portfolio served with `extra` appended to the test config; returns the
/// daemon's log (stderr, a pipe here) once `seen` is in it.
fn serve_demo_until(extra: &str, seen: &str) -> String {
    let dir = common::Daemon::prepare();
    let cfg = dir.path().join("arrears.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(extra);
    std::fs::write(&cfg, text).unwrap();
    common::arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "30",
            "--items",
            "300",
            "--as-of",
            common::AS_OF,
        ],
    );
    let mut d = common::Daemon::spawn(dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.log().contains(seen) {
        assert!(
            Instant::now() < deadline,
            "no {seen:?} in the daemon's log within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = d.terminate();
    assert!(status.success(), "{status}");
    d.log()
}

/// Without any `delivery:` channel (the demo) the daemon says once, as a warning, that
/// delivery is off and how to turn it on: no ERROR per held message, no critical
/// alert. Its log on a pipe carries no colour codes.
#[test]
fn a_daemon_without_delivery_warns_once_in_plain_text() {
    let off = "delivery is off";
    let log = serve_demo_until("", off);
    assert_eq!(log.matches(off).count(), 1, "{log}");
    let line = log.lines().find(|l| l.contains(off)).unwrap();
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("delivery.smtp"), "says how: {line}");
    assert!(!log.contains("messages held"), "{log}");
    assert!(!log.contains(" ERROR "), "{log}");
    assert!(!log.contains('\x1b'), "colour codes on a pipe: {log:?}");
}

/// A channel that is configured but cannot work (its password variable is unset) is
/// still an ERROR: every message waits until someone fixes it.
#[test]
fn a_broken_delivery_channel_is_still_an_error() {
    let log = serve_demo_until(
        "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: 9\n    security: none\n    \
         username: collections\n    password_env: ARREARS_TEST_UNSET_PASSWORD\n    \
         from: { address: collections@acme.example }\n",
        "messages held",
    );
    let line = log.lines().find(|l| l.contains("messages held")).unwrap();
    assert!(line.contains(" ERROR "), "{line}");
    assert!(line.contains("ARREARS_TEST_UNSET_PASSWORD"), "{line}");
    assert!(!log.contains("delivery is off"), "{log}");
}
