//! The google.iam.v1.IAMPolicy mixin for topics, subscriptions, snapshots
//! and schemas. The emulator answers UNIMPLEMENTED; Baton stores policies and
//! answers like the real service.

use std::sync::Arc;

use baton_broker::Broker;
use baton_proto::iam::iam_policy_server::IamPolicy;
use baton_proto::iam::{
    GetIamPolicyRequest, Policy, SetIamPolicyRequest, TestIamPermissionsRequest,
    TestIamPermissionsResponse,
};
use tonic::{Request, Response, Status};

use crate::status::to_status;

/// IAMPolicy over the broker's policy store.
#[derive(Debug, Clone)]
pub struct IamService {
    broker: Arc<Broker>,
}

impl IamService {
    /// Serves the policies of `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl IamPolicy for IamService {
    async fn set_iam_policy(
        &self,
        request: Request<SetIamPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let r = request.into_inner();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let result = self
            .broker
            .set_iam_policy(&r.resource, r.policy.unwrap_or_default(), &paths);
        self.broker
            .durably(result)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_iam_policy(
        &self,
        request: Request<GetIamPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        self.broker
            .get_iam_policy(&request.into_inner().resource)
            .map(Response::new)
            .map_err(to_status)
    }

    async fn test_iam_permissions(
        &self,
        request: Request<TestIamPermissionsRequest>,
    ) -> Result<Response<TestIamPermissionsResponse>, Status> {
        let r = request.into_inner();
        self.broker
            .test_iam_permissions(&r.resource, r.permissions)
            .map(|permissions| Response::new(TestIamPermissionsResponse { permissions }))
            .map_err(to_status)
    }
}
