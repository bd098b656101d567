//! The parts every RPC shares: the [`Rpc`] trait, the request context, the
//! [`PubSubApi`] that runs RPCs, and the macros that declare them.

use std::sync::Arc;
use std::time::Duration;

use baton_auth::Principal;
use baton_broker::{Broker, BrokerResult, ListPage};

use super::access::{AccessControl, Checks, on_project, project_of};

/// Longest a Pull without `return_immediately` waits over gRPC when the
/// caller set no deadline (the emulator's long poll is about 90 s).
pub const MAX_GRPC_PULL_WAIT: Duration = Duration::from_secs(90);

/// Longest a REST pull waits when `returnImmediately` is false.
pub const REST_PULL_WAIT: Duration = Duration::from_secs(60);

/// Whether an RPC's answer waits until its changes are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The RPC changes durable state (a publish, an ack, the catalog): it is
    /// answered once the disk store has it, failures too (an exactly-once
    /// ack that fails for some ids applied the others).
    Durable,
    /// The RPC reads, or changes only what does not survive a restart
    /// (leases): it is answered at once.
    Immediate,
}

/// The transport a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// gRPC over HTTP/2.
    Grpc,
    /// The REST mapping (HTTP/JSON).
    Rest,
}

/// What a request carries besides its message.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The transport it came in on.
    pub transport: Transport,
    /// How long the caller waits for the answer (gRPC's `grpc-timeout`), if
    /// it said.
    pub timeout: Option<Duration>,
    /// The `authorization` header, if sent: the credential checked when
    /// authentication is on.
    pub authorization: Option<http::HeaderValue>,
}

impl RequestContext {
    /// A request with no deadline of its own on `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            timeout: None,
            authorization: None,
        }
    }

    /// Sets the credential the request carries.
    pub fn with_authorization(mut self, authorization: Option<http::HeaderValue>) -> Self {
        self.authorization = authorization;
        self
    }

    /// Sets the caller's deadline.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// When a waiting Pull must answer: shortly before the caller gives up,
    /// so an empty answer arrives instead of DEADLINE_EXCEEDED; without a
    /// caller deadline, after the transport's long poll.
    pub fn pull_wait(&self) -> Duration {
        match (self.timeout, self.transport) {
            (Some(timeout), _) => {
                let margin =
                    (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
                timeout.saturating_sub(margin).min(MAX_GRPC_PULL_WAIT)
            }
            (None, Transport::Grpc) => MAX_GRPC_PULL_WAIT,
            (None, Transport::Rest) => REST_PULL_WAIT,
        }
    }
}

/// One RPC of the Pub/Sub API (the types in this module); see the module
/// docs.
pub trait Rpc: Send + Sync + 'static {
    /// The RPC's full name, `google.pubsub.v1.Publisher/CreateTopic`.
    const NAME: &'static str;
    /// Whether the answer waits for durability.
    const DURABILITY: Durability;
    /// The request message.
    type Request: Send + 'static;
    /// The response message.
    type Response: Send + 'static;

    /// Serves one request.
    fn handle(
        api: &PubSubApi,
        ctx: &RequestContext,
        request: Self::Request,
    ) -> impl Future<Output = BrokerResult<Self::Response>> + Send;
}

/// The Pub/Sub API over one broker, for every transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PubSubApi {
    pub(super) broker: Arc<Broker>,
    /// Authentication and IAM; `None` (the default) lets every caller do
    /// everything, as a local emulator does.
    pub(super) access: Option<AccessControl>,
}

impl PubSubApi {
    /// Serves `broker` to every caller.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self {
            broker,
            access: None,
        }
    }

    /// Serves `broker` to callers that `access` admits.
    pub fn with_access_control(mut self, access: AccessControl) -> Self {
        self.access = Some(access);
        self
    }

    /// The authentication and IAM gate, when authentication is on.
    pub fn access_control(&self) -> Option<&AccessControl> {
        self.access.as_ref()
    }

    /// Which listed resources the caller of `ctx` may see: with
    /// authentication on, those whose project grants `permission` (each
    /// project checked once); with it off, all. Unauthenticated callers get
    /// the authentication error.
    pub(crate) fn project_filter(
        &self,
        ctx: &RequestContext,
        permission: &'static str,
    ) -> BrokerResult<ProjectFilter<'_>> {
        let principal = self.admit(ctx, Checks::none())?;
        Ok(ProjectFilter {
            api: self,
            principal,
            permission,
            allowed: std::collections::HashMap::new(),
        })
    }

    /// With authentication on, who sent the request and whether they may
    /// make it; with it off, nothing (and `None`).
    pub(crate) fn admit(
        &self,
        ctx: &RequestContext,
        checks: Checks<'_>,
    ) -> BrokerResult<Option<Principal>> {
        let Some(access) = &self.access else {
            return Ok(None);
        };
        let principal = access.authenticate(&self.broker, ctx.authorization.as_ref())?;
        access.authorize(&self.broker, &principal, checks)?;
        Ok(Some(principal))
    }

    /// The broker behind the API.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Runs one RPC: with authentication on, the credential and IAM check
    /// of its row in the permissions table; its handler; then, for an RPC
    /// that changes durable state, the wait until the change is on disk.
    pub async fn call<R: Guarded>(
        &self,
        ctx: &RequestContext,
        request: R::Request,
    ) -> BrokerResult<R::Response> {
        tracing::trace!(rpc = R::NAME, transport = ?ctx.transport, "request");
        self.admit(ctx, R::checks(&request))?;
        let answer = R::handle(self, ctx, request).await;
        if R::DURABILITY == Durability::Durable {
            self.broker.durable().await?;
        }
        answer
    }
}

/// An RPC whose permissions are in this table.
pub trait Guarded: Rpc {
    /// What the caller must hold for `request`.
    fn checks(request: &Self::Request) -> Checks<'_>;
}

/// A list response built from one page of the broker's answer.
pub(crate) trait FromPage<T> {
    fn from_page(page: ListPage<T>) -> Self;
}

/// Implements [`FromPage`] for a list response whose items are in `$field`.
macro_rules! list_response {
    ($response:ty, $field:ident, $item:ty) => {
        impl $crate::api::rpc::FromPage<$item> for $response {
            fn from_page(page: baton_broker::ListPage<$item>) -> Self {
                Self {
                    $field: page.items,
                    next_page_token: page.next_page_token,
                }
            }
        }
    };
}
pub(crate) use list_response;

/// Declares RPCs: for each, a type implementing [`Rpc`] with the handler
/// written inline, so the RPCs of a service read as one table.
///
/// `Name(service, durability) Request => Response, |api, ctx, request| body`
macro_rules! rpcs {
    ($(
        $(#[$doc:meta])*
        $name:ident($service:literal, $durability:ident) $request:ty => $response:ty,
        |$api:ident, $ctx:pat_param, $req:pat_param| $body:expr;
    )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl $crate::api::rpc::Rpc for $name {
            const NAME: &'static str = concat!($service, "/", stringify!($name));
            const DURABILITY: $crate::api::rpc::Durability = $crate::api::rpc::Durability::$durability;
            type Request = $request;
            type Response = $response;

            async fn handle(
                $api: &$crate::api::rpc::PubSubApi,
                $ctx: &$crate::api::rpc::RequestContext,
                $req: $request,
            ) -> baton_broker::BrokerResult<$response> {
                $body
            }
        }
    )*};
}
pub(crate) use rpcs;

/// The paths of an optional update mask.
pub(crate) fn mask_paths(mask: Option<baton_proto::wkt::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

/// Which listed resources a caller may see (see
/// [`PubSubApi::project_filter`]): the console's lists and the metrics show
/// only the projects the caller may list.
pub(crate) struct ProjectFilter<'a> {
    api: &'a PubSubApi,
    principal: Option<Principal>,
    permission: &'static str,
    allowed: std::collections::HashMap<String, bool>,
}

impl ProjectFilter<'_> {
    /// Whether the resource `name` (`projects/{p}/...`) may be shown.
    pub(crate) fn allows(&mut self, name: &str) -> bool {
        let (Some(principal), Some(access)) = (&self.principal, self.api.access_control()) else {
            return true;
        };
        let project = project_of(name);
        if let Some(allowed) = self.allowed.get(project) {
            return *allowed;
        }
        let allowed = access
            .authorize(
                self.api.broker(),
                principal,
                on_project(self.permission, name),
            )
            .is_ok();
        self.allowed.insert(project.to_string(), allowed);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_answers_before_the_caller_deadline() {
        let grpc = RequestContext::new(Transport::Grpc);
        let wait = grpc
            .clone()
            .with_timeout(Some(Duration::from_secs(5)))
            .pull_wait();
        assert!(wait < Duration::from_secs(5) && wait >= Duration::from_millis(4400));
        assert_eq!(grpc.pull_wait(), MAX_GRPC_PULL_WAIT);
        assert_eq!(
            RequestContext::new(Transport::Rest).pull_wait(),
            REST_PULL_WAIT
        );
    }
}
