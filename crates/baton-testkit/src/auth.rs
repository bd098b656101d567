//! Authentication set-up the auth suites share (the server's, the client's
//! and the full tier's interop with Google's libraries): a server whose
//! operator token is [`OPERATOR_TOKEN`] ([`operator_auth`]), and the
//! operator's REST round trips that make service accounts, their key files
//! and IAM grants ([`TestServer::as_operator`] and the methods after it).
//!
//! Like the rest of the harness these helpers panic, with the call and the
//! answer in the message, when the server does not do what they ask.

use base64::Engine as _;
use baton_server::AuthSettings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::server::TestServer;

/// The operator token of [`operator_auth`]: a bearer token that may do
/// everything.
pub const OPERATOR_TOKEN: &str = "operator-secret-for-tests";

/// Authentication on, with [`OPERATOR_TOKEN`] as the operator token (for
/// [`ServerConfig::with_auth`](baton_server::ServerConfig::with_auth)).
pub fn operator_auth() -> AuthSettings {
    AuthSettings {
        operator_token: Some(OPERATOR_TOKEN.into()),
        operator_token_file: None,
    }
}

impl TestServer {
    /// A REST call to [`Self::url`]`(path)` with `body` as JSON, sent with
    /// [`OPERATOR_TOKEN`]; answers the JSON answer. Panics unless the call
    /// succeeds (2xx) with a JSON answer.
    pub async fn as_operator(&self, method: Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {status}, reading the body: {e}"));
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: {status}, not JSON: {text:?}"));
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Creates the service account `id` of `project` as the operator;
    /// answers its email, asserted to be `{id}@{project}.iam.gserviceaccount.com`.
    pub async fn create_service_account(&self, project: &str, id: &str) -> String {
        let created = self
            .as_operator(
                Method::POST,
                &format!("/v1/projects/{project}/serviceAccounts"),
                json!({"accountId": id, "serviceAccount": {"displayName": id}}),
            )
            .await;
        let email = created["email"]
            .as_str()
            .unwrap_or_else(|| panic!("no email in the created account: {created}"))
            .to_owned();
        assert_eq!(email, format!("{id}@{project}.iam.gserviceaccount.com"));
        email
    }

    /// Revokes an authorized user's `refresh_token` at `/revoke`, as
    /// Google's OAuth endpoint takes it (a form); asserts it was accepted.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) {
        let revoked = self
            .http
            .post(self.url("/revoke"))
            .form(&[("token", refresh_token)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /revoke: {e}"));
        assert_eq!(revoked.status(), 200, "POST /revoke");
    }

    /// Creates a key of the service account `email` as the operator
    /// (through `projects/-`, which names any project); answers the Google
    /// key file Baton made for it (its JSON), asserted to be a
    /// `service_account` key file of `email`.
    pub async fn create_key(&self, email: &str) -> Value {
        let key = self
            .as_operator(
                Method::POST,
                &format!("/v1/projects/-/serviceAccounts/{email}/keys"),
                json!({}),
            )
            .await;
        assert_eq!(
            key["privateKeyType"], "TYPE_GOOGLE_CREDENTIALS_FILE",
            "{key}"
        );
        let data = key["privateKeyData"]
            .as_str()
            .unwrap_or_else(|| panic!("no privateKeyData in the key: {key}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("privateKeyData is not base64: {e}"));
        let file: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("the key file is not JSON: {e}"));
        assert_eq!(file["type"], "service_account", "{file}");
        assert_eq!(file["client_email"], email, "{file}");
        file
    }

    /// Sets the IAM policy of `resource` (a topic, subscription, snapshot,
    /// schema or `projects/{project}`) as the operator to one binding of
    /// `role` to `member` (e.g. `serviceAccount:EMAIL`), replacing what it
    /// held; asserts the policy answered holds that binding.
    pub async fn grant(&self, resource: &str, role: &str, member: &str) {
        let policy = self
            .as_operator(
                Method::POST,
                &format!("/v1/{resource}:setIamPolicy"),
                json!({"policy": {"bindings": [{"role": role, "members": [member]}]}}),
            )
            .await;
        let binding = &policy["bindings"][0];
        assert_eq!(binding["role"], role, "{resource}: {policy}");
        assert_eq!(binding["members"], json!([member]), "{resource}: {policy}");
    }
}
