//! The `google.iam.v1.IAMPolicy` mixin's RPCs on topics, subscriptions,
//! snapshots, schemas and projects. The emulator answers UNIMPLEMENTED;
//! Baton stores policies, enforces them when authentication is on, and
//! answers like the real service.

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

    /// TestIamPermissions: with authentication on, the permissions asked
    /// for that the caller's policies grant; with it off, all of them.
    TestIamPermissions("google.iam.v1.IAMPolicy", Immediate)
        TestIamPermissionsRequest => TestIamPermissionsResponse,
    |api, ctx, r| {
        let asked = api.broker.test_iam_permissions(&r.resource, r.permissions)?;
        let permissions = match &api.access {
            Some(access) => {
                let principal = access.authenticate(&api.broker, ctx.authorization.as_ref())?;
                access.granted(&api.broker, &principal, &r.resource, asked)
            }
            None => asked,
        };
        Ok(TestIamPermissionsResponse { permissions })
    };
}
