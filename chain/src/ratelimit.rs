//! A cap on JSON-RPC requests per second, as a layer under the retry layer: every attempt,
//! retries included, waits for its slot.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportFut};
use tokio::time::Instant;

/// Spaces requests `1 / rate` seconds apart; `None` lets them through at once.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    every: Option<Duration>,
    next: Arc<Mutex<Instant>>,
}

impl RateLimitLayer {
    /// At most `per_second` requests a second (`None` or 0: no limit).
    pub(crate) fn new(per_second: Option<f64>) -> Self {
        Self {
            every: per_second
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// When the next request may go: the later of now and the previous slot plus the spacing.
    fn slot(&self) -> Option<Instant> {
        let every = self.every?;
        let mut next = self.next.lock().expect("rate limiter lock");
        let slot = (*next).max(Instant::now());
        *next = slot + every;
        Some(slot)
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limit: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around a transport.
#[derive(Debug, Clone)]
pub(crate) struct RateLimited<S> {
    inner: S,
    limit: RateLimitLayer,
}

impl<S> tower::Service<RequestPacket> for RateLimited<S>
where
    S: tower::Service<
            RequestPacket,
            Response = ResponsePacket,
            Error = TransportError,
            Future = TransportFut<'static>,
        > + Clone
        + Send
        + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let mut inner = self.inner.clone();
        let slot = self.limit.slot();
        Box::pin(async move {
            if let Some(at) = slot {
                tokio::time::sleep_until(at).await;
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_by_the_rate() {
        let limit = RateLimitLayer::new(Some(4.0));
        let start = Instant::now();
        let slots: Vec<Duration> = (0..5)
            .map(|_| limit.slot().unwrap().duration_since(start))
            .collect();
        assert_eq!(
            slots,
            [0, 250, 500, 750, 1000].map(Duration::from_millis).to_vec()
        );
        assert!(RateLimitLayer::new(None).slot().is_none());
        assert!(RateLimitLayer::new(Some(0.0)).slot().is_none());
    }
}
