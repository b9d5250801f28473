//! The command line: what `kairos` accepts, parsed by clap at the edge.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use secrecy::SecretString;

// Where the server is and who is asking; shared by every client command. (Not a `///`
// comment: clap would make it the help text of whatever command flattens this.)
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Base URL of the Kairos server.
    #[arg(
        long,
        env = "KAIROS_ADDR",
        default_value = "http://127.0.0.1:8740",
        global = true
    )]
    pub addr: String,

    /// API token (a person's token or a workload's platform JWT).
    #[arg(
        long,
        env = "KAIROS_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub token: Option<SecretString>,

    /// Print the server's JSON instead of tables (JSON Lines for `audit`).
    #[arg(long, global = true)]
    pub json: bool,

    /// Trust only the CA certificates in this PEM file for an https:// --addr (for a
    /// broker whose certificate a private CA signed). Default: the public web roots.
    #[arg(long, env = "KAIROS_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,

    /// Show this client certificate (PEM) to an https:// --addr that asks for one
    /// (`tls_client_auth`); needs --key-file.
    #[arg(
        long,
        env = "KAIROS_CERT_FILE",
        value_name = "FILE",
        global = true,
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,

    /// The private key (PEM) of --cert-file.
    #[arg(
        long,
        env = "KAIROS_KEY_FILE",
        value_name = "FILE",
        global = true,
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

// The client commands; the binary flattens these next to `server`. (A `///` comment here
// would become the help text of the whole `kairos` binary.)
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask for an entitlement for a task.
    Request(RequestArgs),
    /// List grants.
    Grants(GrantsArgs),
    /// Show one grant with its end-of-access receipt.
    Grant {
        /// The grant id (grt_…).
        id: String,
    },
    /// List access requests.
    Requests(RequestsArgs),
    /// Show one access request (and, once, the credential it delivers to its workload).
    #[command(visible_alias = "request-status")]
    ShowRequest {
        /// The request id (req_…).
        id: String,
        /// While it is pending, wait for the decision (default 5m), e.g. `--wait=2m`.
        #[arg(
            long,
            value_name = "DURATION",
            num_args = 0..=1,
            default_missing_value = "5m",
            value_parser = parse_duration
        )]
        wait: Option<Duration>,
    },
    /// The task is done: end a grant now.
    Release {
        /// The grant id (grt_…).
        grant_id: String,
        /// Wait until the access is verified gone (default 1m), then show the grant with its
        /// receipt; without it the answer comes as soon as the end is recorded.
        #[arg(
            long,
            value_name = "DURATION",
            num_args = 0..=1,
            default_missing_value = "1m",
            value_parser = parse_duration
        )]
        wait: Option<Duration>,
    },
    /// Revoke one grant, or every active grant of an identity or task.
    Revoke(RevokeArgs),
    /// Extend an active grant (up to its maximum) and get a fresh token.
    Renew(RenewArgs),
    /// Approve a pending request.
    Approve(DecideArgs),
    /// Deny a pending request.
    Deny(DecideArgs),
    /// Validate and apply a configuration file (and the files it references). Live grants
    /// whose identity, team, target or entitlement it removes, or that its policies now
    /// deny, are ended and verified gone.
    Apply {
        /// The main TOML configuration file.
        file: PathBuf,
        /// Show what would be created, changed and removed, and which live grants would
        /// end (removed, or denied by the new policies); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a configuration that removes every identity or every target (refused
        /// otherwise: an empty or truncated file is likelier than an intended wipe).
        #[arg(long)]
        allow_remove_all: bool,
    },
    /// Show what is configured (admins, operators, auditors).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the entitlements one may ask for, with target, tier and longest TTL.
    Entitlements {
        /// As a workload (its platform JWT as --token): also name the team that would
        /// approve each for this identity. Policy still decides each request.
        #[arg(long)]
        mine: bool,
    },
    /// Search the audit log, or verify its hash chain (`kairos audit verify`).
    Audit(AuditArgs),
    /// List the signing keys, or rotate them (`kairos keys rotate`).
    Keys(KeysArgs),
    /// Manage people and their API tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Identities: their state (active, suspended, retired), owners and orphans; suspend,
    /// resume or retire one.
    Identity {
        #[command(subcommand)]
        command: crate::identity::IdentityCommand,
    },
    /// Ask whether a Kairos token is honoured right now (RFC 7662).
    Introspect {
        /// The token to inspect; `-` reads it from stdin.
        // Its own id: a positional named `token` would collide with the global `--token`.
        #[arg(id = "access_token", value_name = "TOKEN", value_parser = parse_secret)]
        access_token: SecretString,
    },
    /// Trade a workload's platform JWT for a Kairos token (RFC 8693).
    Exchange(ExchangeArgs),
    /// Serve the Model Context Protocol (MCP) on stdin/stdout for an AI agent runtime.
    ///
    /// Each message is forwarded to the server's `/v1/mcp` with the workload's platform JWT
    /// (read again for every message, so a rotated token file is picked up); the tools act
    /// as that workload. Logs go to stderr only.
    Mcp(McpArgs),
    /// Alerts of the governance rules: list, show, acknowledge, resolve.
    Alerts(crate::governance::AlertsArgs),
    /// The governance posture: identities, lifecycle findings, standing privilege and
    /// revocation figures, each mapped to OWASP NHI Top 10 and NIST CSF 2.0.
    Posture,
    /// After-action reviews of break-glass grants: list, show, and file (owners).
    Review {
        #[command(subcommand)]
        command: crate::reviews::ReviewCommand,
    },
    /// Notifications to Slack and signed webhooks: list the outbox (pending, delivered,
    /// dead), or send a dead message again with `retry ID`.
    Notifications(crate::notifications::NotificationsArgs),
    /// Is the server up?
    Health,
    /// Recertification: list what is due or overdue, attest as an owner.
    Recert {
        #[command(subcommand)]
        command: crate::commands::recert::RecertCommand,
    },
    /// Standing exceptions (static secrets that cannot be removed yet): list them, record
    /// a rotation.
    Exception {
        #[command(subcommand)]
        command: crate::commands::recert::ExceptionCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Issuers, teams, identities, targets, entitlements and policies in force (secrets
    /// appear only as the names of their env vars or files).
    Show,
}

/// What the task is: every request names one.
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Kind of task: change, incident, maintenance or job.
    #[arg(long, value_name = "KIND")]
    pub task_kind: String,
    /// Ticket, incident, pipeline run or job id.
    #[arg(long, value_name = "REF")]
    pub task_ref: String,
    /// Why the access is needed.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The entitlement, `target/role`.
    pub entitlement: String,
    #[command(flatten)]
    pub task: TaskArgs,
    /// How long the access should last, e.g. `15m` (capped by the entitlement).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Request on behalf of this identity (people only).
    #[arg(long)]
    pub identity: Option<String>,
    /// For an entitlement on an ssh target: the SSH public key to certify (a `.pub` file,
    /// e.g. ~/.ssh/id_ed25519.pub). The certificate is the credential (`--token-only`
    /// prints just its line, to save as `<key>-cert.pub`).
    #[arg(long, value_name = "FILE")]
    pub public_key_file: Option<std::path::PathBuf>,
    /// If approval is needed, wait for it (default 5m). Write `--wait=2m`, or put it after
    /// the entitlement, so the entitlement is not taken for the duration.
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "5m",
        value_parser = parse_duration
    )]
    pub wait: Option<Duration>,
    /// Print only the access token on stdout (the grant id goes to stderr as `grant: ID`,
    /// for `kairos release`); fails if none was issued.
    #[arg(long)]
    pub token_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrantStateArg {
    Active,
    Revoking,
    Ended,
}

impl GrantStateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct GrantsArgs {
    /// Only grants in this state.
    #[arg(long, value_enum)]
    pub state: Option<GrantStateArg>,
    /// Only grants of this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only grants for this task reference (ticket, incident, run id).
    #[arg(long)]
    pub task_ref: Option<String>,
    /// Only grants of this entitlement, `target/role`.
    #[arg(long)]
    pub entitlement: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestStateArg {
    Pending,
    Granted,
    Denied,
    Expired,
}

impl RequestStateArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RequestsArgs {
    /// Only requests in this state.
    #[arg(long, value_enum)]
    pub state: Option<RequestStateArg>,
    /// Only requests of this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["grant_id", "identity", "task_ref"])))]
pub struct RevokeArgs {
    /// The grant to revoke.
    pub grant_id: Option<String>,
    /// Revoke every active grant of this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Revoke every active grant for this task reference.
    #[arg(long)]
    pub task_ref: Option<String>,
    /// Why (1-1000 characters); kept in each revocation's audit record.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// The grant to extend.
    pub grant_id: String,
    /// Extend to now + this, e.g. `10m`.
    #[arg(long)]
    pub ttl: String,
    /// Print only the new access token on stdout (`grant: ID` on stderr).
    #[arg(long)]
    pub token_only: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The request id (req_…).
    pub request_id: String,
    /// Why: recorded in the audit log.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    #[command(flatten)]
    pub filter: AuditFilterArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and name the first tampered record.
    Verify {
        /// Also prove the chain still extends every signed checkpoint in this file (the
        /// server's --audit-checkpoints / [server] audit_checkpoint_file): catches a
        /// store writer who cut the tail or recomputed every hash.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<std::path::PathBuf>,
    },
    /// Sign the chain's head now: the server appends the checkpoint to its checkpoint
    /// file and log, and it is printed here.
    Checkpoint,
}

#[derive(Debug, Clone, Default, Args)]
pub struct AuditFilterArgs {
    /// Only records about this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Grant id.
    #[arg(long)]
    pub grant: Option<String>,
    /// Request id.
    #[arg(long)]
    pub request: Option<String>,
    /// Only records for this task reference.
    #[arg(long)]
    pub task_ref: Option<String>,
    /// From this time: RFC 3339 (`2026-11-26T10:00:00Z`) or a duration ago (`1h`, `2d ago`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time: RFC 3339 or a duration ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: Option<KeysCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key current; the old one stays published until its tokens expire.
    Rotate {
        /// Algorithm of the new key (default: the server's, es256 unless configured).
        #[arg(long, value_enum)]
        alg: Option<KeyAlg>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    Es256,
    Eddsa,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "es256",
            Self::Eddsa => "eddsa",
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Add a person, or a resource server (`--role resource-server --target T`); the API
    /// token is shown once.
    Add {
        /// The person's user name.
        name: String,
        /// What they may do: admin (everything), operator (request on behalf, revoke,
        /// read), approver (decide their teams' requests), auditor (read).
        #[arg(long, value_enum)]
        role: UserRole,
        /// A team the person belongs to (repeat for several).
        #[arg(long = "team", value_name = "TEAM")]
        teams: Vec<String>,
        /// For a resource server: a token target whose tokens it may introspect and revoke
        /// (repeat for several). It authenticates as HTTP Basic `name:token` or as Bearer.
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// List people.
    List,
    /// Revoke every API token of a person.
    Revoke {
        /// The person's user name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRole {
    Admin,
    Operator,
    Approver,
    Auditor,
    ResourceServer,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::ResourceServer => "resource-server",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// A file holding the workload's platform JWT (e.g. a projected Kubernetes
    /// service-account token), read for every message. Without it, --token / KAIROS_TOKEN.
    #[arg(long, env = "KAIROS_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ExchangeArgs {
    /// The workload's platform JWT; `-` reads it from stdin.
    #[arg(long, value_parser = parse_secret)]
    pub subject_token: SecretString,
    /// The entitlement, `target/role`.
    pub entitlement: String,
    #[command(flatten)]
    pub task: TaskArgs,
    /// How long the access should last, e.g. `15m`.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Print only the access token on stdout (`grant: ID` on stderr).
    #[arg(long)]
    pub token_only: bool,
}

fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; write a duration such as `5m` or `90s`"))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use secrecy::ExposeSecret;

    use super::*;

    /// Stands in for the binary: `Command` flattened next to its own commands.
    #[derive(Debug, Parser)]
    #[command(name = "kairos")]
    struct TestCli {
        #[command(flatten)]
        global: GlobalOpts,
        #[command(subcommand)]
        command: TestTop,
    }

    #[derive(Debug, Subcommand)]
    enum TestTop {
        /// Stands in for the binary's `server`.
        Server,
        #[command(flatten)]
        Client(Command),
    }

    fn parse(args: &str) -> Result<(GlobalOpts, Command), clap::Error> {
        let argv = std::iter::once("kairos").chain(args.split_whitespace());
        let cli = TestCli::try_parse_from(argv)?;
        match cli.command {
            TestTop::Client(c) => Ok((cli.global, c)),
            TestTop::Server => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }

    fn ok(args: &str) -> (GlobalOpts, Command) {
        match parse(args) {
            Ok(p) => p,
            Err(e) => panic!("`{args}` should parse: {e}"),
        }
    }

    fn rejected(args: &str) {
        assert!(parse(args).is_err(), "`{args}` should be rejected");
    }

    #[test]
    fn definition_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn request_with_all_options() {
        let (g, c) = ok(
            "request prod-db/read --task-kind change --task-ref CHG-1 --reason fix --ttl 10m \
             --identity ci-deployer --wait 2m --token-only --json",
        );
        assert!(g.json);
        let Command::Request(r) = c else {
            panic!("not a request: {c:?}")
        };
        assert_eq!(r.entitlement, "prod-db/read");
        assert_eq!(r.task.task_kind, "change");
        assert_eq!(r.task.task_ref, "CHG-1");
        assert_eq!(r.task.reason, "fix");
        assert_eq!(r.ttl.as_deref(), Some("10m"));
        assert_eq!(r.identity.as_deref(), Some("ci-deployer"));
        assert_eq!(r.wait, Some(Duration::from_secs(120)));
        assert!(r.token_only);
    }

    #[test]
    fn request_wait_defaults_to_five_minutes_and_is_off_without_the_flag() {
        let wait = |args: &str| match ok(args).1 {
            Command::Request(r) => r.wait,
            c => panic!("not a request: {c:?}"),
        };
        let base = "request db/ro --task-kind job --task-ref run-7 --reason nightly";
        assert_eq!(wait(base), None);
        assert_eq!(
            wait(&format!("{base} --wait")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            wait("request --wait=45s db/ro --task-kind job --task-ref r --reason x"),
            Some(Duration::from_secs(45))
        );
        rejected(&format!("{base} --wait soon"));
    }

    #[test]
    fn request_needs_its_task() {
        rejected("request db/ro --task-ref r --reason x");
        rejected("request db/ro --task-kind job --reason x");
        rejected("request db/ro --task-kind job --task-ref r");
        rejected("request --task-kind job --task-ref r --reason x");
    }

    #[test]
    fn global_options_go_anywhere_and_the_token_stays_secret() {
        let (g, _) = ok("--addr http://kairos:1 grants --token s3cret --state active");
        assert_eq!(g.addr, "http://kairos:1");
        let token = g.token.as_ref().map(|t| t.expose_secret().to_owned());
        assert_eq!(token.as_deref(), Some("s3cret"));
        assert!(!format!("{g:?}").contains("s3cret"));
    }

    #[test]
    fn grants_filters() {
        let Command::Grants(a) =
            ok("grants --state revoking --identity ci --task-ref CHG-1 --entitlement db/ro").1
        else {
            panic!("not grants")
        };
        assert_eq!(a.state, Some(GrantStateArg::Revoking));
        assert_eq!(a.identity.as_deref(), Some("ci"));
        assert_eq!(a.task_ref.as_deref(), Some("CHG-1"));
        assert_eq!(a.entitlement.as_deref(), Some("db/ro"));
        rejected("grants --state gone");
    }

    #[test]
    fn show_request_has_an_alias() {
        for args in ["show-request req_1", "request-status req_1"] {
            assert!(matches!(ok(args).1, Command::ShowRequest { id, wait: None } if id == "req_1"));
        }
        assert!(matches!(
            ok("request-status req_1 --wait").1,
            Command::ShowRequest { wait: Some(w), .. } if w == Duration::from_secs(300)
        ));
    }

    /// Every option and subcommand says what it is for in `--help`.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.is_hide_set() || a.get_id() == "help" || a.get_id() == "version" {
                    continue;
                }
                if a.get_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&TestCli::command(), "kairos", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn revoke_takes_exactly_one_scope() {
        assert!(matches!(
            ok("revoke grt_1").1,
            Command::Revoke(RevokeArgs { grant_id: Some(g), identity: None, task_ref: None, reason: None }) if g == "grt_1"
        ));
        assert!(matches!(
            ok("revoke grt_1 --reason leaked").1,
            Command::Revoke(RevokeArgs { reason: Some(r), .. }) if r == "leaked"
        ));
        assert!(matches!(
            ok("revoke --identity ci").1,
            Command::Revoke(RevokeArgs { identity: Some(i), .. }) if i == "ci"
        ));
        assert!(matches!(
            ok("revoke --task-ref INC-9").1,
            Command::Revoke(RevokeArgs { task_ref: Some(t), .. }) if t == "INC-9"
        ));
        rejected("revoke");
        rejected("revoke grt_1 --identity ci");
        rejected("revoke --identity ci --task-ref INC-9");
    }

    #[test]
    fn renew_approve_deny_need_their_arguments() {
        assert!(matches!(ok("renew grt_1 --ttl 10m").1, Command::Renew(r) if r.ttl == "10m"));
        rejected("renew grt_1");
        assert!(matches!(
            ok("approve req_1 --reason ok").1,
            Command::Approve(d) if d.request_id == "req_1" && d.reason == "ok"
        ));
        assert!(matches!(ok("deny req_1 --reason no").1, Command::Deny(_)));
        rejected("approve req_1");
        rejected("deny --reason no");
    }

    #[test]
    fn audit_search_and_verify() {
        let Command::Audit(a) = ok("audit --identity ci --since 1h --until 10m --limit 5").1 else {
            panic!("not audit")
        };
        assert!(a.command.is_none());
        assert_eq!(a.filter.identity.as_deref(), Some("ci"));
        assert_eq!(a.filter.since.as_deref(), Some("1h"));
        assert_eq!(a.filter.until.as_deref(), Some("10m"));
        assert_eq!(a.filter.limit, Some(5));
        assert!(matches!(
            ok("audit verify").1,
            Command::Audit(AuditArgs {
                command: Some(AuditCommand::Verify { checkpoints: None }),
                ..
            })
        ));
        assert!(matches!(
            ok("audit verify --checkpoints cp.jsonl").1,
            Command::Audit(AuditArgs {
                command: Some(AuditCommand::Verify { checkpoints: Some(f) }),
                ..
            }) if f.to_str() == Some("cp.jsonl")
        ));
        assert!(matches!(
            ok("audit checkpoint").1,
            Command::Audit(AuditArgs {
                command: Some(AuditCommand::Checkpoint),
                ..
            })
        ));
        assert!(matches!(
            ok("audit").1,
            Command::Audit(AuditArgs { command: None, .. })
        ));
        rejected("audit --identity ci verify");
    }

    #[test]
    fn keys_list_and_rotate() {
        assert!(matches!(
            ok("keys").1,
            Command::Keys(KeysArgs { command: None })
        ));
        assert!(matches!(
            ok("keys rotate --alg eddsa").1,
            Command::Keys(KeysArgs {
                command: Some(KeysCommand::Rotate {
                    alg: Some(KeyAlg::Eddsa)
                })
            })
        ));
        assert!(matches!(
            ok("keys rotate").1,
            Command::Keys(KeysArgs {
                command: Some(KeysCommand::Rotate { alg: None })
            })
        ));
        rejected("keys rotate --alg rsa");
    }

    #[test]
    fn user_commands() {
        let Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    teams,
                    targets,
                },
        } = ok("user add alice --role approver --team payments --team sre").1
        else {
            panic!("not user add")
        };
        assert_eq!(name, "alice");
        assert_eq!(role, UserRole::Approver);
        assert_eq!(teams, ["payments", "sre"]);
        assert!(targets.is_empty());
        let Command::User {
            command: UserCommand::Add { role, targets, .. },
        } = ok("user add orders-rs --role resource-server --target orders-api").1
        else {
            panic!("not user add")
        };
        assert_eq!(role, UserRole::ResourceServer);
        assert_eq!(targets, ["orders-api"]);
        assert!(matches!(
            ok("user list").1,
            Command::User {
                command: UserCommand::List
            }
        ));
        assert!(matches!(
            ok("user revoke alice").1,
            Command::User { command: UserCommand::Revoke { name } } if name == "alice"
        ));
        rejected("user add alice");
        rejected("user add alice --role root");
        rejected("user");
    }

    #[test]
    fn exchange_and_introspect() {
        let Command::Exchange(x) = ok(
            "exchange --subject-token eyJ.jwt db/ro --task-kind job --task-ref run-1 --reason r --ttl 5m",
        )
        .1
        else {
            panic!("not exchange")
        };
        assert_eq!(x.subject_token.expose_secret(), "eyJ.jwt");
        assert_eq!(x.entitlement, "db/ro");
        assert_eq!(x.ttl.as_deref(), Some("5m"));
        assert!(!format!("{x:?}").contains("eyJ.jwt"));
        rejected("exchange db/ro --task-kind job --task-ref run-1 --reason r");
        let (g, cmd) = ok("--token caller introspect tok");
        let Command::Introspect { access_token } = cmd else {
            panic!("not introspect")
        };
        // The token to inspect and the caller's own token stay apart.
        assert_eq!(access_token.expose_secret(), "tok");
        assert_eq!(
            g.token.map(|t| t.expose_secret().to_owned()).as_deref(),
            Some("caller")
        );
    }

    #[test]
    fn simple_commands() {
        assert!(matches!(ok("health").1, Command::Health));
        assert!(matches!(ok("grant grt_1").1, Command::Grant { id } if id == "grt_1"));
        assert!(
            matches!(ok("release grt_1").1, Command::Release { grant_id, wait: None } if grant_id == "grt_1")
        );
        assert!(matches!(
            ok("release grt_1 --wait").1,
            Command::Release { wait: Some(w), .. } if w == Duration::from_secs(60)
        ));
        assert!(matches!(
            ok("release --wait=5s grt_1").1,
            Command::Release { wait: Some(w), .. } if w == Duration::from_secs(5)
        ));
        assert!(
            matches!(ok("apply kairos.toml").1, Command::Apply { file, dry_run: false, allow_remove_all: false } if file.ends_with("kairos.toml"))
        );
        assert!(matches!(
            ok("apply kairos.toml --dry-run --allow-remove-all").1,
            Command::Apply {
                dry_run: true,
                allow_remove_all: true,
                ..
            }
        ));
        assert!(matches!(
            ok("config show").1,
            Command::Config {
                command: ConfigCommand::Show
            }
        ));
        assert!(matches!(
            ok("entitlements --mine").1,
            Command::Entitlements { mine: true }
        ));
        assert!(matches!(
            ok("requests --state pending").1,
            Command::Requests(RequestsArgs {
                state: Some(RequestStateArg::Pending),
                ..
            })
        ));
        rejected("grant");
        rejected("release");
        rejected("apply");
    }
}
