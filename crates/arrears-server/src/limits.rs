//! What one client, and all of them together, may make the daemon hold: open watch
//! streams, statement uploads in flight, and the size of the text an error sends back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::Status;

/// The most characters of a caller's own input an error message quotes back.
pub const QUOTE_CHARS: usize = 64;
/// The longest status message the API sends. Handlers quote fields through [`quote`];
/// this catches every message that was built some other way (a store or parser error
/// that embeds what it was given).
pub const STATUS_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes on a character boundary, saying how much was left out.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len()))
}

/// A caller's text as an error message quotes it: a short prefix of a long value.
pub fn quote(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len())),
    }
}

/// The status with its message cut to [`STATUS_BYTES`]; code, details and metadata kept.
pub fn clip_status(s: Status) -> Status {
    if s.message().len() <= STATUS_BYTES {
        return s;
    }
    let msg = clip(s.message(), STATUS_BYTES).into_owned();
    Status::with_details_and_metadata(
        s.code(),
        msg,
        s.details().to_vec().into(),
        s.metadata().clone(),
    )
}

/// Open `WatchWorklist` streams per principal; the total is `Shared::watchers`, the
/// figure Health and `/metrics` report.
#[derive(Default)]
pub struct WatchSlots {
    per_principal: Mutex<HashMap<String, u32>>,
}

/// One open stream's claim; given back when the stream is dropped (the client went
/// away, or the daemon ended the stream).
pub struct WatchSlot {
    shared: Arc<super::Shared>,
    principal: String,
}

impl WatchSlots {
    /// Claims a slot for one more stream of `principal`, or says which limit is reached.
    pub fn claim(shared: &Arc<super::Shared>, principal: &str) -> Result<WatchSlot, Status> {
        let lim = &shared.cfg.limits;
        let me = &shared.watch_slots;
        // One lock for both checks, so two racing claims cannot both take the last slot.
        let mut open = me.per_principal.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.get(principal).copied().unwrap_or(0);
        if mine >= lim.watch_streams_per_principal {
            ::metrics::counter!("arrears_limit_refusals_total", "limit" => "watch_streams_per_principal")
                .increment(1);
            return Err(Status::resource_exhausted(format!(
                "{} has {mine} WatchWorklist stream(s) open, the most one principal may \
                 (serve.limits.watch_streams_per_principal = {}); close one first",
                quote(principal),
                lim.watch_streams_per_principal
            )));
        }
        let total = shared.watchers.load(Ordering::Relaxed);
        if total >= lim.watch_streams {
            ::metrics::counter!("arrears_limit_refusals_total", "limit" => "watch_streams")
                .increment(1);
            return Err(Status::resource_exhausted(format!(
                "the daemon has {total} WatchWorklist stream(s) open, the most it keeps \
                 (serve.limits.watch_streams = {}); try again later",
                lim.watch_streams
            )));
        }
        *open.entry(principal.to_string()).or_default() += 1;
        shared.watchers.fetch_add(1, Ordering::Relaxed);
        Ok(WatchSlot {
            shared: shared.clone(),
            principal: principal.to_string(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .watch_slots
            .per_principal
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.principal);
            }
        }
        self.shared.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Caps the calls of one gRPC service in flight; the ones over the cap are refused with
/// RESOURCE_EXHAUSTED before their request is read.
///
/// Refused rather than queued: a queued call's body would sit in HTTP/2 flow-control
/// buffers, and what the client sent of it counts against the connection's window, so
/// a few waiting uploads could stall every other call on the same connection. A
/// client that is told at once can retry with backoff, which gRPC clients do for
/// RESOURCE_EXHAUSTED.
///
/// Placed inside the auth interceptor, so unauthenticated calls never take a slot.
#[derive(Clone)]
pub struct InFlight<S> {
    inner: S,
    slots: Arc<Semaphore>,
    max: u32,
    /// The setting that sets `max`, named in the refusal.
    setting: &'static str,
}

impl<S> InFlight<S> {
    pub fn new(inner: S, max: u32, setting: &'static str) -> InFlight<S> {
        InFlight {
            inner,
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            setting,
        }
    }
}

impl<S: NamedService> NamedService for InFlight<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for InFlight<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>
        + NamedService,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                // Held until the handler has answered: the request is decoded, parsed
                // and stored inside this future.
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let out = fut.await;
                    drop(permit);
                    out
                })
            }
            Err(_) => {
                ::metrics::counter!("arrears_limit_refusals_total", "limit" => self.setting)
                    .increment(1);
                let status = Status::resource_exhausted(format!(
                    "{} calls of {} are in progress, the most the daemon takes at once \
                     (serve.limits.{} = {}); retry shortly",
                    self.max,
                    S::NAME,
                    self.setting,
                    self.max
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tower::{Service, ServiceExt};

    /// A call that ends when the test lets it.
    #[derive(Clone)]
    struct Held(Arc<Semaphore>);

    impl NamedService for Held {
        const NAME: &'static str = "arrears.v1.Statements";
    }

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let gate = self.0.clone();
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn refusal(r: &http::Response<Body>) -> Option<Status> {
        Status::from_header_map(r.headers()).filter(|s| s.code() != Code::Ok)
    }

    #[tokio::test]
    async fn calls_over_the_cap_are_refused_at_once_until_one_ends() {
        let gate = Arc::new(Semaphore::new(0));
        let mut svc = InFlight::new(Held(gate.clone()), 2, "uploads");
        let base = svc.clone();
        let call = move || {
            let mut svc = base.clone();
            async move {
                svc.ready()
                    .await
                    .unwrap()
                    .call(http::Request::new(()))
                    .await
            }
        };
        let a = tokio::spawn(call());
        let b = tokio::spawn(call());
        tokio::task::yield_now().await;
        while gate.available_permits() > 0 || svc.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        let s = refusal(&refused).expect("a status");
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message().contains("arrears.v1.Statements")
                && s.message().contains("serve.limits.uploads = 2"),
            "{s:?}"
        );

        gate.add_permits(1);
        let done = tokio::select! {
            r = a => r,
            r = b => r,
        };
        assert!(refusal(&done.unwrap().unwrap()).is_none());
        let c = tokio::spawn(call());
        gate.add_permits(2);
        assert!(refusal(&c.await.unwrap().unwrap()).is_none());
    }

    #[test]
    fn long_text_is_cut_to_a_prefix() {
        let long = "é".repeat(600);
        let q = quote(&long);
        assert!(q.starts_with(&"é".repeat(QUOTE_CHARS)) && q.ends_with("(1200 bytes in all)"));
        assert_eq!(quote("2026-13-01"), "2026-13-01");
        let c = clip(&long, 101);
        assert!(c.len() < 140 && c.starts_with(&"é".repeat(50)), "{c}");
        let s = clip_status(Status::invalid_argument(long.clone()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().len() <= STATUS_BYTES + 40);
    }
}
