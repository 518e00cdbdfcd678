//! `delivery` against real servers on 127.0.0.1: aiosmtpd (`python/smtp_sink.py`)
//! for e-mail, with and without AUTH and TLS, and a loopback HTTP server with
//! canned answers for the webhook.

mod common;

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
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
        let stdout = child.stdout.take().unwrap();
        let mut sink = Sink {
            child,
            port: 0,
            dir,
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
    std::fs::write(&file, format!("{WRONG}\n")).unwrap();
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
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
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
