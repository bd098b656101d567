//! `baton iam`, `baton projects` and `baton auth`: service accounts, their
//! key files, project-level IAM bindings and authorized users' credential
//! files, shaped like `gcloud iam service-accounts`, `gcloud projects
//! add-iam-policy-binding` and `gcloud auth application-default login`.
//! They call the server's REST API (the IAM API's service-account methods,
//! the Resource Manager's project policy methods, Baton's
//! `/api/authorized-users`) with the operator token, the bootstrap admin's
//! credential that `baton serve --auth` writes to its data directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// Where the server is and how to authenticate to it as the operator.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the Baton server (`https://` when it serves TLS);
    /// defaults to `http://$PUBSUB_EMULATOR_HOST`, else
    /// `http://127.0.0.1:8085`.
    #[arg(long, env = "BATON_SERVER", global = true)]
    server: Option<String>,
    /// The operator token file that `baton serve --auth` wrote.
    #[arg(
        long,
        env = "BATON_OPERATOR_TOKEN_FILE",
        default_value = "baton-data/auth/operator-token",
        global = true
    )]
    operator_token_file: PathBuf,
    /// A certificate (PEM) to trust for `https://` servers, such as the
    /// development CA that `baton serve --tls` prints.
    #[arg(long, env = "BATON_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
}

/// `baton iam ...`.
#[derive(Debug, clap::Subcommand)]
pub enum IamCommand {
    /// Service accounts and their keys.
    #[command(name = "service-accounts", subcommand)]
    ServiceAccounts(ServiceAccountsCommand),
}

/// `baton auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Application Default Credentials for a person (like `gcloud auth
    /// application-default`).
    #[command(name = "application-default", subcommand)]
    ApplicationDefault(ApplicationDefaultCommand),
}

/// `baton auth application-default ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ApplicationDefaultCommand {
    /// Write an `authorized_user` credential file for a user, as `gcloud
    /// auth application-default login` does after the browser consent: its
    /// refresh token (issued by the server, bound to a client id and secret
    /// of its own) buys access tokens at the server's `/token`, and IAM
    /// treats them as `user:ACCOUNT`. Needs the operator token.
    #[command(
        after_help = "Examples:\n  baton auth application-default login --account alice@example.com --output alice.json\n  export GOOGLE_APPLICATION_CREDENTIALS=alice.json\n  baton projects add-iam-policy-binding demo --member user:alice@example.com --role roles/pubsub.editor"
    )]
    Login {
        /// The user's email (the IAM member is `user:ACCOUNT`).
        #[arg(long)]
        account: String,
        /// Where to write the credential file (mode 0600).
        #[arg(long, default_value = "application_default_credentials.json")]
        output: PathBuf,
        /// The project billed for quota (the file's `quota_project_id`).
        #[arg(long)]
        quota_project: Option<String>,
        /// The scopes the refresh token may be redeemed for (comma
        /// separated); by default gcloud's: openid, userinfo.email and
        /// cloud-platform (which covers Pub/Sub's own scope).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Revoke the refresh token of a credential file `login` wrote (the
    /// access tokens it bought stop working too) and delete the file.
    #[command(after_help = "Example:\n  baton auth application-default revoke --file alice.json")]
    Revoke {
        /// The credential file.
        #[arg(long, default_value = "application_default_credentials.json")]
        file: PathBuf,
    },
}

/// `baton iam service-accounts ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceAccountsCommand {
    /// Create a service account `NAME@PROJECT.iam.gserviceaccount.com`.
    #[command(
        after_help = "Example:\n  baton iam service-accounts create publisher --project demo --display-name 'Order publisher'"
    )]
    Create {
        /// The account id (6-30 lowercase letters, digits and hyphens).
        name: String,
        /// The project it belongs to.
        #[arg(long, env = "PUBSUB_PROJECT_ID")]
        project: String,
        /// A human-readable name.
        #[arg(long, default_value = "")]
        display_name: String,
        /// What the account is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a project's service accounts.
    #[command(after_help = "Example:\n  baton iam service-accounts list --project demo")]
    List {
        /// The project.
        #[arg(long, env = "PUBSUB_PROJECT_ID")]
        project: String,
    },
    /// Delete a service account (its keys stop working at once).
    #[command(
        after_help = "Example:\n  baton iam service-accounts delete publisher@demo.iam.gserviceaccount.com"
    )]
    Delete {
        /// The account's email.
        email: String,
    },
    /// Key files of a service account.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `baton iam service-accounts keys ...`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and write its key file (Google's JSON format, whose
    /// `token_uri` points at this server). Baton keeps only the public key.
    #[command(
        after_help = "Examples:\n  baton iam service-accounts keys create key.json --iam-account publisher@demo.iam.gserviceaccount.com\n  export GOOGLE_APPLICATION_CREDENTIALS=key.json"
    )]
    Create {
        /// Where to write the key file.
        output: PathBuf,
        /// The service account's email.
        #[arg(long)]
        iam_account: String,
    },
    /// List a service account's keys.
    #[command(
        after_help = "Example:\n  baton iam service-accounts keys list --iam-account publisher@demo.iam.gserviceaccount.com"
    )]
    List {
        /// The service account's email.
        #[arg(long)]
        iam_account: String,
    },
    /// Delete a key (tokens signed with it are refused from then on).
    #[command(
        after_help = "Example:\n  baton iam service-accounts keys delete 3f2a9c --iam-account publisher@demo.iam.gserviceaccount.com"
    )]
    Delete {
        /// The key id (`private_key_id` in the key file).
        key_id: String,
        /// The service account's email.
        #[arg(long)]
        iam_account: String,
    },
}

/// `baton projects ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ProjectsCommand {
    /// Print a project's IAM policy.
    #[command(after_help = "Example:\n  baton projects get-iam-policy demo")]
    GetIamPolicy {
        /// The project id.
        project: String,
    },
    /// Grant a role on the whole project.
    #[command(
        after_help = "Example:\n  baton projects add-iam-policy-binding demo --member serviceAccount:publisher@demo.iam.gserviceaccount.com --role roles/pubsub.publisher"
    )]
    AddIamPolicyBinding {
        /// The project id.
        project: String,
        /// Who: `serviceAccount:EMAIL`, `user:EMAIL`, `allAuthenticatedUsers`.
        #[arg(long)]
        member: String,
        /// The role, `roles/pubsub.publisher`.
        #[arg(long)]
        role: String,
    },
    /// Take a role on the project away.
    #[command(
        after_help = "Example:\n  baton projects remove-iam-policy-binding demo --member serviceAccount:publisher@demo.iam.gserviceaccount.com --role roles/pubsub.publisher"
    )]
    RemoveIamPolicyBinding {
        /// The project id.
        project: String,
        /// Who.
        #[arg(long)]
        member: String,
        /// The role.
        #[arg(long)]
        role: String,
    },
}

/// A REST client for the server's admin methods.
struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminArgs {
    /// The server's base URL: `--server`, else `http://$PUBSUB_EMULATOR_HOST`,
    /// else `http://127.0.0.1:8085`.
    pub fn server_url(&self) -> String {
        match &self.server {
            Some(server) => server.trim_end_matches('/').to_string(),
            None => match std::env::var("PUBSUB_EMULATOR_HOST") {
                Ok(host) if !host.trim().is_empty() => format!("http://{}", host.trim()),
                _ => "http://127.0.0.1:8085".to_string(),
            },
        }
    }
}

impl Admin {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let base = args.server_url();
        let token = match std::fs::read_to_string(&args.operator_token_file) {
            Ok(token) => token.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("reading {}", args.operator_token_file.display()));
            }
        };
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &args.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(certificate);
        }
        Ok(Self {
            base,
            token,
            http: http.build().context("building the HTTP client")?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            let message = if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_empty() {
                format!("{message} (no operator token: pass --operator-token-file)")
            } else {
                message
            };
            return Err(crate::failure::HttpFailure {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        Ok(value)
    }
}

/// The project of a service-account email (`name@project.iam.gserviceaccount.com`).
fn account_path(email: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}")
}

/// Runs a `baton iam` verb.
pub async fn iam(args: &AdminArgs, command: IamCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let IamCommand::ServiceAccounts(command) = command;
    match command {
        ServiceAccountsCommand::Create {
            name,
            project,
            display_name,
            description,
        } => {
            let account = admin
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/projects/{project}/serviceAccounts"),
                    Some(json!({
                        "accountId": name,
                        "serviceAccount": {"displayName": display_name, "description": description},
                    })),
                )
                .await?;
            println!(
                "Created service account [{}].",
                account["email"].as_str().unwrap_or_default()
            );
        }
        ServiceAccountsCommand::List { project } => {
            let listed = admin
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/projects/{project}/serviceAccounts"),
                    None,
                )
                .await?;
            for account in listed["accounts"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}",
                    account["email"].as_str().unwrap_or_default(),
                    account["displayName"].as_str().unwrap_or_default(),
                    if account["disabled"].as_bool() == Some(true) {
                        "disabled"
                    } else {
                        "enabled"
                    },
                );
            }
        }
        ServiceAccountsCommand::Delete { email } => {
            admin
                .call(reqwest::Method::DELETE, &account_path(&email), None)
                .await?;
            println!("Deleted service account [{email}].");
        }
        ServiceAccountsCommand::Keys(KeysCommand::Create {
            output,
            iam_account,
        }) => {
            let key = admin
                .call(
                    reqwest::Method::POST,
                    &format!("{}/keys", account_path(&iam_account)),
                    Some(json!({})),
                )
                .await?;
            let data = key["privateKeyData"]
                .as_str()
                .context("the server sent no key data")?;
            let file = base64::engine::general_purpose::STANDARD
                .decode(data)
                .context("the server sent key data that is not base64")?;
            write_private(&output, &file)?;
            let id = key["name"]
                .as_str()
                .and_then(|name| name.rsplit('/').next())
                .unwrap_or_default();
            println!(
                "created key [{id}] of type [json] as [{}] for [{iam_account}]",
                output.display()
            );
        }
        ServiceAccountsCommand::Keys(KeysCommand::List { iam_account }) => {
            let listed = admin
                .call(
                    reqwest::Method::GET,
                    &format!("{}/keys", account_path(&iam_account)),
                    None,
                )
                .await?;
            for key in listed["keys"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    key["name"]
                        .as_str()
                        .and_then(|n| n.rsplit('/').next())
                        .unwrap_or_default(),
                    key["validAfterTime"].as_str().unwrap_or_default(),
                );
            }
        }
        ServiceAccountsCommand::Keys(KeysCommand::Delete {
            key_id,
            iam_account,
        }) => {
            admin
                .call(
                    reqwest::Method::DELETE,
                    &format!("{}/keys/{key_id}", account_path(&iam_account)),
                    None,
                )
                .await?;
            println!("Deleted key [{key_id}] for service account [{iam_account}].");
        }
    }
    Ok(())
}

/// Runs a `baton auth` verb.
pub async fn auth(args: &AdminArgs, command: AuthCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let AuthCommand::ApplicationDefault(command) = command;
    match command {
        ApplicationDefaultCommand::Login {
            account,
            output,
            quota_project,
            scopes,
        } => {
            let file = admin
                .call(
                    reqwest::Method::POST,
                    "/api/authorized-users",
                    Some(json!({
                        "account": account,
                        "scopes": scopes,
                        "quotaProjectId": quota_project,
                    })),
                )
                .await?;
            if file["type"] != "authorized_user" {
                bail!("the server did not answer an authorized_user credential: {file}");
            }
            let json = serde_json::to_vec_pretty(&file)?;
            write_private(&output, &json)?;
            println!(
                "Credentials saved to file: [{}] for [user:{}]",
                output.display(),
                file["account"].as_str().unwrap_or(&account)
            );
            println!(
                "Use them as Application Default Credentials: export GOOGLE_APPLICATION_CREDENTIALS={}",
                output.display()
            );
        }
        ApplicationDefaultCommand::Revoke { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let credential: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let token = credential["refresh_token"]
                .as_str()
                .with_context(|| format!("{} has no refresh_token", file.display()))?;
            let url = format!("{}/revoke", admin.base);
            let response = admin
                .http
                .post(&url)
                .form(&[("token", token)])
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            let status = response.status();
            if !status.is_success() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                return Err(crate::failure::HttpFailure {
                    status: status.as_u16(),
                    message: body["error_description"]
                        .as_str()
                        .map_or_else(|| body.to_string(), str::to_string),
                }
                .into());
            }
            std::fs::remove_file(&file).with_context(|| format!("deleting {}", file.display()))?;
            println!("Credentials revoked and [{}] deleted.", file.display());
        }
    }
    Ok(())
}

/// Writes a key file readable by its owner only.
fn write_private(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs a `baton projects` verb.
pub async fn projects(args: &AdminArgs, command: ProjectsCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let get = |project: &str| {
        let path = format!("/v1/projects/{project}:getIamPolicy");
        let admin = &admin;
        async move {
            admin
                .call(reqwest::Method::POST, &path, Some(json!({})))
                .await
        }
    };
    let set = |project: &str, policy: Value| {
        let path = format!("/v1/projects/{project}:setIamPolicy");
        let admin = &admin;
        async move {
            admin
                .call(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({ "policy": policy })),
                )
                .await
        }
    };
    match command {
        ProjectsCommand::GetIamPolicy { project } => {
            let policy = get(&project).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
        }
        ProjectsCommand::AddIamPolicyBinding {
            project,
            member,
            role,
        } => {
            let mut policy = get(&project).await?;
            add_binding(&mut policy, &role, &member);
            let updated = set(&project, policy).await?;
            println!("Updated IAM policy for project [{project}].");
            println!("{}", serde_json::to_string_pretty(&updated)?);
        }
        ProjectsCommand::RemoveIamPolicyBinding {
            project,
            member,
            role,
        } => {
            let mut policy = get(&project).await?;
            if !remove_binding(&mut policy, &role, &member) {
                bail!("Policy binding with the specified principal and role not found!");
            }
            let updated = set(&project, policy).await?;
            println!("Updated IAM policy for project [{project}].");
            println!("{}", serde_json::to_string_pretty(&updated)?);
        }
    }
    Ok(())
}

/// Adds `member` to the binding of `role` (creating it), once.
fn add_binding(policy: &mut Value, role: &str, member: &str) {
    if !policy["bindings"].is_array() {
        policy["bindings"] = json!([]);
    }
    let Some(bindings) = policy["bindings"].as_array_mut() else {
        return;
    };
    let found = bindings
        .iter_mut()
        .find(|b| b["role"] == role && b.get("condition").is_none());
    match found {
        Some(binding) => {
            let members = binding["members"].as_array_mut();
            match members {
                Some(members) if members.iter().any(|m| m == member) => {}
                Some(members) => members.push(json!(member)),
                None => binding["members"] = json!([member]),
            }
        }
        None => bindings.push(json!({ "role": role, "members": [member] })),
    }
}

/// Removes `member` from the binding of `role` (and the binding once
/// empty); whether it was there.
fn remove_binding(policy: &mut Value, role: &str, member: &str) -> bool {
    let Some(bindings) = policy["bindings"].as_array_mut() else {
        return false;
    };
    let mut removed = false;
    for binding in bindings.iter_mut().filter(|b| b["role"] == role) {
        if let Some(members) = binding["members"].as_array_mut() {
            let before = members.len();
            members.retain(|m| m != member);
            removed |= members.len() != before;
        }
    }
    bindings.retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bindings_are_added_once_and_removed() {
        let mut policy = json!({"etag": "AAE="});
        add_binding(
            &mut policy,
            "roles/pubsub.publisher",
            "serviceAccount:a@p.iam.gserviceaccount.com",
        );
        add_binding(
            &mut policy,
            "roles/pubsub.publisher",
            "serviceAccount:a@p.iam.gserviceaccount.com",
        );
        add_binding(&mut policy, "roles/pubsub.publisher", "user:b@example.com");
        assert_eq!(policy["bindings"].as_array().unwrap().len(), 1);
        assert_eq!(
            policy["bindings"][0]["members"].as_array().unwrap().len(),
            2
        );
        assert!(remove_binding(
            &mut policy,
            "roles/pubsub.publisher",
            "user:b@example.com"
        ));
        assert!(!remove_binding(
            &mut policy,
            "roles/pubsub.publisher",
            "user:b@example.com"
        ));
        assert!(remove_binding(
            &mut policy,
            "roles/pubsub.publisher",
            "serviceAccount:a@p.iam.gserviceaccount.com"
        ));
        assert_eq!(policy["bindings"], json!([]));
        assert_eq!(policy["etag"], "AAE=");
    }
}
