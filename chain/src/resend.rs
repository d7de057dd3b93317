//! Sending a transaction twice runs it once. A reply to `eth_sendRawTransaction` can be lost
//! after the node took the transaction (a timeout, a proxy's 502): the retry layer then sends
//! the same signed bytes again, and the node answers that it knows them ("already known") or,
//! once mined, that their nonce is used. Either answer would read as a nonce race, and the
//! call be signed again with the next nonce: run twice. This layer, under the retry layer,
//! answers such a resend with the transaction's hash (keccak256 of the bytes) when the node
//! holds that very transaction. A node that keeps no transaction index (it answers null for a
//! mined transaction) cannot tell; there a resend mined already still reads as a nonce race.

use std::task::{Context, Poll};

use alloy::primitives::{B256, keccak256};
use alloy::rpc::json_rpc::{
    Id, Request, RequestPacket, Response, ResponsePacket, ResponsePayload, SerializedRequest,
};
use alloy::transports::{TransportError, TransportFut};
use serde_json::value::RawValue;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KnownTxLayer;

impl<S> tower::Layer<S> for KnownTxLayer {
    type Service = KnownTx<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KnownTx { inner }
    }
}

/// The service [`KnownTxLayer`] wraps around a transport.
#[derive(Debug, Clone)]
pub(crate) struct KnownTx<S> {
    inner: S,
}

/// True for a node's answer that it holds the transaction already.
pub(crate) fn is_already_known(message: &str) -> bool {
    let m = message.to_lowercase();
    ["already known", "already imported", "known transaction"]
        .iter()
        .any(|k| m.contains(k))
}

/// True for a node's answer that the transaction's nonce is used.
pub(crate) fn is_nonce_used(message: &str) -> bool {
    let m = message.to_lowercase();
    ["nonce too low", "nonce has already been used"]
        .iter()
        .any(|k| m.contains(k))
}

/// The hash of the transaction an `eth_sendRawTransaction` request carries.
fn raw_tx_hash(req: &SerializedRequest) -> Option<B256> {
    if req.method() != "eth_sendRawTransaction" {
        return None;
    }
    let [raw]: [alloy::primitives::Bytes; 1] = serde_json::from_str(req.params()?.get()).ok()?;
    Some(keccak256(&raw))
}

fn answer(id: Id, hash: B256) -> ResponsePacket {
    let result = RawValue::from_string(format!("\"{hash}\"")).expect("a quoted hash is JSON");
    ResponsePacket::Single(Response {
        id,
        payload: ResponsePayload::Success(result),
    })
}

impl<S> tower::Service<RequestPacket> for KnownTx<S>
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
        let sent = match &request {
            RequestPacket::Single(req) => raw_tx_hash(req).map(|h| (req.id().clone(), h)),
            RequestPacket::Batch(_) => None,
        };
        Box::pin(async move {
            let response = inner.call(request).await?;
            let Some((id, hash)) = sent else {
                return Ok(response);
            };
            let Some(message) = response.first_error_message() else {
                return Ok(response);
            };
            if is_already_known(message) {
                return Ok(answer(id, hash));
            }
            if is_nonce_used(message) {
                // Ours, mined already, or another transaction with its nonce.
                let lookup_id = Id::String(format!("tributary-resent-{hash}"));
                let lookup = Request::new("eth_getTransactionByHash", lookup_id, [hash])
                    .serialize()
                    .expect("a hash serialises");
                let found = inner.call(RequestPacket::Single(lookup)).await?;
                if let Some(ResponsePayload::Success(tx)) = found.single_payload()
                    && tx.get() != "null"
                {
                    return Ok(answer(id, hash));
                }
            }
            Ok(response)
        })
    }
}
