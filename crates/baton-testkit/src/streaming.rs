//! StreamingPull sessions: open a stream, send further requests, and read
//! responses with a time bound, so a test never hangs on a silent stream.
//! The bounds are on Tokio's clock, so in a paused test they are virtual
//! time: "nothing within 300 ms" costs no real time and is exact.

use std::time::Duration;

use tokio::time::Instant;

use baton_proto::pubsub::{ReceivedMessage, StreamingPullRequest, StreamingPullResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::grpc::subscriber;

/// An open StreamingPull: a sender for further requests and the responses.
#[derive(Debug)]
pub struct PullStream {
    /// Requests after the first; dropping it half-closes the stream.
    pub requests: mpsc::Sender<StreamingPullRequest>,
    /// What the server answers.
    pub responses: Streaming<StreamingPullResponse>,
}

impl PullStream {
    /// Opens a stream on `channel` whose first request is `first`; the error
    /// is the call's status when the server refuses it outright.
    pub async fn open(channel: Channel, first: StreamingPullRequest) -> Result<Self, Status> {
        let (requests, rx) = mpsc::channel(64);
        requests.send(first).await.expect("queue first request");
        let responses = subscriber(channel)
            .streaming_pull(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self {
            requests,
            responses,
        })
    }

    /// Sends one more request on the stream.
    pub async fn send(&self, request: StreamingPullRequest) {
        self.requests
            .send(request)
            .await
            .expect("stream request queued");
    }

    /// The next response within `within`: `None` on timeout, `Some(Err)` on
    /// an error status, `Some(Ok(None))` when the stream ended with OK.
    pub async fn next_within(
        &mut self,
        within: Duration,
    ) -> Option<Result<Option<StreamingPullResponse>, Status>> {
        tokio::time::timeout(within, self.responses.message())
            .await
            .ok()
    }

    /// The next response, which must come within `within`.
    pub async fn expect_response(&mut self, within: Duration) -> StreamingPullResponse {
        match self.next_within(within).await {
            Some(Ok(Some(response))) => response,
            Some(Ok(None)) => panic!("stream ended with OK, a response was expected"),
            Some(Err(status)) => panic!("stream failed: {status:?}"),
            None => panic!("no response within {within:?}"),
        }
    }

    /// Collects received messages until `count` arrived or `within` passed.
    pub async fn collect(&mut self, count: usize, within: Duration) -> Vec<ReceivedMessage> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < count {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_within(left).await {
                Some(Ok(Some(response))) => got.extend(response.received_messages),
                Some(Ok(None)) => panic!("stream ended with OK while collecting"),
                Some(Err(status)) => panic!("stream failed while collecting: {status:?}"),
                None => break,
            }
        }
        got
    }

    /// Waits for the stream to end with an error status (skipping responses).
    pub async fn expect_error(&mut self, within: Duration) -> Status {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Ok(Some(_))) => continue,
                Some(Ok(None)) => panic!("stream ended with OK, an error was expected"),
                Some(Err(status)) => return status,
                None => panic!("stream did not end within {within:?}"),
            }
        }
    }

    /// Sends a keepalive (an empty request) and waits for its answer.
    pub async fn keepalive(&mut self, within: Duration) -> StreamingPullResponse {
        self.send(StreamingPullRequest::default()).await;
        self.expect_response(within).await
    }
}

/// The first request of a stream on `subscription` (deadline 10 s).
pub fn stream_request(subscription: &str) -> StreamingPullRequest {
    StreamingPullRequest {
        subscription: subscription.to_string(),
        stream_ack_deadline_seconds: 10,
        client_id: "baton-test".to_string(),
        ..Default::default()
    }
}

/// Opens a stream that must fail, from the call or its first item (within
/// 5 s); answers the status.
pub async fn stream_failure(channel: Channel, first: StreamingPullRequest) -> Status {
    match PullStream::open(channel, first).await {
        Err(status) => status,
        Ok(mut stream) => stream.expect_error(Duration::from_secs(5)).await,
    }
}
