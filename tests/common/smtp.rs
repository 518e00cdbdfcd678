//! A minimal SMTP server on 127.0.0.1 for tests that count deliveries: it accepts
//! every recipient, records a message once its data is complete (before answering
//! 250, so a client killed after that point still counts as delivered) and can
//! answer slowly, to keep an outbox pass busy.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct SmtpSink {
    pub port: u16,
    delivered: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    /// `delay`: how long the server waits before accepting each message's data.
    pub fn start(delay: Duration) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (delivered.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let d = d.clone();
                std::thread::spawn(move || {
                    let _ = session(conn, delay, &d);
                });
            }
        });
        SmtpSink {
            port,
            delivered,
            stop,
        }
    }

    /// The Message-ID of every message accepted, in order.
    pub fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn session(
    conn: TcpStream,
    delay: Duration,
    delivered: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            out.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            let mut id = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    // The client went away mid-message: nothing was delivered.
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                if id.is_empty() && line.to_ascii_lowercase().starts_with("message-id:") {
                    id = line["message-id:".len()..].trim().to_string();
                }
            }
            std::thread::sleep(delay);
            delivered.lock().unwrap().push(id);
            out.write_all(b"250 2.0.0 queued\r\n")?;
        } else if cmd.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if cmd.starts_with("RSET") || cmd.starts_with("NOOP") {
            out.write_all(b"250 ok\r\n")?;
        } else {
            // HELO, MAIL FROM, RCPT TO
            out.write_all(b"250 ok\r\n")?;
        }
    }
}
