//! The `google.iam.v1.IAMPolicy` mixin's RPCs on topics, subscriptions,
//! snapshots and schemas. The emulator answers UNIMPLEMENTED; Baton stores
//! policies and answers like the real service.

use baton_proto::iam::{
    GetIamPolicyRequest, Policy, SetIamPolicyRequest, TestIamPermissionsRequest,
    TestIamPermissionsResponse,
};

use super::rpc::{mask_paths, rpcs};

rpcs! {
    /// SetIamPolicy; the update mask, when given, names the fields to set.
    SetIamPolicy("google.iam.v1.IAMPolicy", Durable) SetIamPolicyRequest => Policy,
    |api, _, r| api
        .broker
        .set_iam_policy(&r.resource, r.policy.unwrap_or_default(), &mask_paths(r.update_mask));

    /// GetIamPolicy.
    GetIamPolicy("google.iam.v1.IAMPolicy", Immediate) GetIamPolicyRequest => Policy,
    |api, _, r| api.broker.get_iam_policy(&r.resource);

    /// TestIamPermissions.
    TestIamPermissions("google.iam.v1.IAMPolicy", Immediate)
        TestIamPermissionsRequest => TestIamPermissionsResponse,
    |api, _, r| api
        .broker
        .test_iam_permissions(&r.resource, r.permissions)
        .map(|permissions| TestIamPermissionsResponse { permissions });
}
