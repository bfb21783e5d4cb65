//! `switchboard users` and `switchboard tokens`: people with roles (admin, supervisor,
//! developer, agent), and their own API tokens. Passwords are read from standard input, never
//! from the command line (where `ps` and shell histories would keep them).

use std::io::Read as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Remote;
use super::client::{Client, encode_path};

#[derive(Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List users with their roles.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Create a user. With --password-stdin they can sign in to the browser.
    Add {
        /// Lowercase letters, digits, '.', '_', '-'; an agent's user takes the agent's name.
        name: String,
        /// admin, supervisor, developer or agent.
        #[arg(long)]
        role: String,
        /// Read the password (10 characters at least) from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a user's role or password.
    Set {
        name: String,
        #[arg(long)]
        role: Option<String>,
        /// Read a new password from standard input (ends the user's browser sessions).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disable a user: they cannot sign in, and their tokens and sessions are refused.
    Disable {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Enable a disabled user.
    Enable {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a user with their tokens.
    Remove {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// List API tokens (never their secrets).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create an API token for a user; prints it once.
    Create {
        #[arg(long)]
        user: String,
        /// What it is for (`laptop`, `ci`).
        #[arg(long, default_value = "")]
        label: String,
        /// When it stops working, RFC 3339 (2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token by its id (from `tokens list`).
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from standard input")?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "no password on standard input: pipe it in, such as `printf %s \"$PASSWORD\" | switchboard users add ...`"
    );
    Ok(password)
}

fn user_line(u: &Value) -> String {
    format!(
        "{:<20} {:<11} {:<9} {}",
        u["name"].as_str().unwrap_or_default(),
        u["role"].as_str().unwrap_or_default(),
        if u["disabled"] == true {
            "disabled"
        } else {
            "enabled"
        },
        if u["has_password"] == true {
            "signs in"
        } else {
            "tokens only"
        }
    )
}

pub fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    let path = |name: &str| format!("/v1/users/{}", encode_path(name));
    match args.command {
        UsersCommand::List { remote } => {
            let client = Client::new(&remote)?;
            for user in client.get("/v1/users")?.as_array().into_iter().flatten() {
                println!("{}", user_line(user));
            }
        }
        UsersCommand::Add {
            name,
            role,
            password_stdin,
            remote,
        } => {
            let client = Client::new(&remote)?;
            let password = password_stdin.then(password_from_stdin).transpose()?;
            let body = json!({"name": name, "role": role, "password": password});
            let user = client.post_json("/v1/users", &body)?;
            println!("created {}", user_line(&user));
        }
        UsersCommand::Set {
            name,
            role,
            password_stdin,
            remote,
        } => {
            let client = Client::new(&remote)?;
            let password = password_stdin.then(password_from_stdin).transpose()?;
            anyhow::ensure!(
                role.is_some() || password.is_some(),
                "nothing to change: give --role or --password-stdin"
            );
            let user =
                client.patch_json(&path(&name), &json!({"role": role, "password": password}))?;
            println!("changed {}", user_line(&user));
        }
        UsersCommand::Disable { name, remote } => {
            let client = Client::new(&remote)?;
            let user = client.patch_json(&path(&name), &json!({"disabled": true}))?;
            println!("disabled {}", user_line(&user));
        }
        UsersCommand::Enable { name, remote } => {
            let client = Client::new(&remote)?;
            let user = client.patch_json(&path(&name), &json!({"disabled": false}))?;
            println!("enabled {}", user_line(&user));
        }
        UsersCommand::Remove { name, remote } => {
            let client = Client::new(&remote)?;
            client.delete(&path(&name))?;
            println!("removed {name} and their tokens");
        }
    }
    Ok(())
}

pub fn run_tokens(args: TokensArgs) -> anyhow::Result<()> {
    match args.command {
        TokensCommand::List { user, remote } => {
            let client = Client::new(&remote)?;
            let path = match &user {
                Some(user) => format!("/v1/users/{}/tokens", encode_path(user)),
                None => "/v1/tokens".to_string(),
            };
            for t in client.get(&path)?.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<20} {:<16} created {}{}",
                    t["id"].as_str().unwrap_or_default(),
                    t["user"].as_str().unwrap_or_default(),
                    t["label"].as_str().unwrap_or_default(),
                    t["created_at"].as_str().unwrap_or_default(),
                    t["expires_at"]
                        .as_str()
                        .map(|at| format!(", expires {at}"))
                        .unwrap_or_default()
                );
            }
        }
        TokensCommand::Create {
            user,
            label,
            expires,
            remote,
        } => {
            let client = Client::new(&remote)?;
            let body = json!({"label": label, "expires_at": expires});
            let made =
                client.post_json(&format!("/v1/users/{}/tokens", encode_path(&user)), &body)?;
            println!(
                "token {} for {user} (shown once; store it now):\n\n    {}\n",
                made["id"].as_str().unwrap_or_default(),
                made["token"].as_str().unwrap_or_default()
            );
        }
        TokensCommand::Revoke { id, remote } => {
            let client = Client::new(&remote)?;
            client.delete(&format!("/v1/tokens/{}", encode_path(&id)))?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}
