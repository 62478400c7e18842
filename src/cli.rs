//! The `herald` command line.

use std::io::{BufRead, Read};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::store::{AnyConnection, Migrated, Store, StoreUrl, accounts, delivery, tokens, users};

/// Herald, a JMAP mail server built around push.
#[derive(Parser, Debug)]
#[command(name = "herald", version, about)]
pub struct Cli {
    /// Configuration file; a missing file means all defaults.
    #[arg(long, global = true, default_value = "config.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (creates and migrates the store on first start).
    Serve,
    /// Create or migrate the store, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Share accounts between users.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The key that signs Web Push requests (VAPID, RFC 8292).
    #[command(subcommand)]
    Vapid(VapidCommand),
    /// Extra addresses that deliver to a user (LMTP `RCPT TO`).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Recount the mailbox counts of users' accounts and report (or with --repair, fix) any
    /// difference from the maintained ones.
    Check {
        /// Users whose personal accounts to check; all users when none is named.
        users: Vec<String>,
        /// Rewrite the maintained counts from the recount where they differ.
        #[arg(long)]
        repair: bool,
    },
    /// Extract the search text of users' emails again from their messages (after an upgrade that
    /// changed what is indexed); a running server keeps serving meanwhile.
    Reindex {
        /// Users whose personal accounts to index again; all users when none is named.
        users: Vec<String>,
    },
    /// Deliver a message (RFC 5322, read from standard input) to a user's inbox, as new mail.
    Deliver {
        /// The user whose personal account receives the message.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Share OWNER's personal account with another user (RFC 8620 §1.6.2 shared accounts).
    Share {
        /// The user whose account is shared.
        owner: String,
        /// The user who gains access.
        #[arg(long = "with")]
        with: String,
        /// Read only: the other user may read but not change anything.
        #[arg(long)]
        read_only: bool,
    },
    /// Withdraw a user's access to OWNER's personal account (effective on their next request).
    Unshare {
        owner: String,
        #[arg(long = "with")]
        with: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user (and their personal account).
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users.
    List,
    /// Change a user's password (read from standard input unless given).
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Remove a user, their tokens and the accounts they own.
    Remove { name: String },
}

#[derive(clap::Args, Debug)]
pub struct PasswordSource {
    /// The password (visible in the process list; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token for a user and print it (shown only once).
    Create { name: String },
    /// Revoke a token, given its id or the token itself.
    Revoke { token: String },
    /// List tokens (ids only), optionally of one user.
    List { name: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Deliver mail for ADDRESS to a user; `@domain` takes every address of the domain that
    /// nothing else takes (a catch-all).
    Add {
        address: String,
        /// The user who receives it.
        #[arg(long)]
        to: String,
    },
    /// List aliases and their users.
    List,
    /// Remove an alias.
    Remove { address: String },
}

#[derive(Subcommand, Debug)]
pub enum VapidCommand {
    /// Print the public key (base64url) that the session advertises as applicationServerKey.
    Show,
    /// Replace the key pair. Browser subscriptions made with the old public key are refused by
    /// their push services from now on: web clients must subscribe again with the new key.
    Rotate,
}

/// Errors of the command line, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    crate::logging::init();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            // libpq and others write several lines; an operator gets one.
            let message = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("herald: {message}");
            1
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(&cli.config, std::env::vars())?;
    let command = match cli.command {
        Command::Serve => return serve(config),
        Command::Migrate => return migrate(&config),
        command => command,
    };
    // Opening the store migrates it.
    let store = Store::open(&config.store.url, 1)?;
    let mut conn = store.conn()?;
    match command {
        Command::Serve | Command::Migrate => Ok(()),
        Command::User(cmd) => user_command(&mut conn, cmd),
        Command::Deliver { to } => deliver_command(&config, &mut conn, &to),
        Command::Token(cmd) => token_command(&mut conn, cmd),
        Command::Vapid(cmd) => vapid_command(&mut conn, cmd),
        Command::Check {
            users: names,
            repair,
        } => check(&mut conn, names, repair),
        Command::Reindex { users: names } => reindex(&mut conn, names),
        Command::Alias(cmd) => alias_command(&mut conn, cmd),
        Command::Account(cmd) => account_command(&mut conn, cmd),
    }
}

/// `herald migrate`: says what it did, with the store URL's password hidden.
fn migrate(config: &Config) -> Result<(), CliError> {
    let url = StoreUrl::parse(&config.store.url)?;
    match crate::store::connection::migrate(&url)? {
        Migrated::Created => println!("store {url} created"),
        Migrated::Applied(n) => println!("store {url} migrated ({n} migrations applied)"),
        Migrated::UpToDate => println!("store {url} is up to date"),
    }
    Ok(())
}

fn user_command(conn: &mut AnyConnection, cmd: UserCommand) -> Result<(), CliError> {
    match cmd {
        UserCommand::Add { name, password } => {
            let password = read_password(&password)?;
            users::create(conn, &name, &password)?;
            println!("user {name} added");
        }
        UserCommand::List => {
            for user in users::list(conn)? {
                println!("{}\t{}", user.name, user.id);
            }
        }
        UserCommand::Passwd { name, password } => {
            let password = read_password(&password)?;
            users::set_password(conn, &name, &password)?;
            println!("password of {name} changed");
        }
        UserCommand::Remove { name } => {
            users::remove(conn, &name)?;
            println!("user {name} removed");
        }
    }
    Ok(())
}

/// `herald deliver --to USER`: a message from standard input into the user's inbox. The server
/// learns of this write from the change log (this process publishes nothing).
fn deliver_command(config: &Config, conn: &mut AnyConnection, to: &str) -> Result<(), CliError> {
    let mut message = Vec::new();
    std::io::stdin()
        .lock()
        .take(config.limits.max_size_upload + 1)
        .read_to_end(&mut message)?;
    if message.len() as u64 > config.limits.max_size_upload {
        return Err(CliError::Usage(format!(
            "the message is larger than {} octets",
            config.limits.max_size_upload
        )));
    }
    let user =
        users::find_by_name(conn, to)?.ok_or_else(|| CliError::Usage(format!("no user {to:?}")))?;
    let account = accounts::personal_account(conn, &user.id)?;
    let policy = crate::store::auto_reply::AutoReplyPolicy {
        mail_domain: config.submission.domain.clone(),
        relay: !config.submission.relay.trim().is_empty(),
        interval_secs: config.submission.vacation_reply_interval_secs as i64,
    };
    let (created, _) = delivery::deliver(conn, &account, message, Some(&policy))?;
    println!("{}", created.id);
    Ok(())
}

fn token_command(conn: &mut AnyConnection, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create { name } => {
            let (id, token) = tokens::create(conn, &name)?;
            eprintln!("token {id} for {name} (shown only once):");
            println!("{token}");
        }
        TokenCommand::Revoke { token } => {
            tokens::revoke(conn, &token)?;
            println!("token revoked");
        }
        TokenCommand::List { name } => {
            for t in tokens::list(conn, name.as_deref())? {
                println!("{}\t{}\t{}", t.id, t.user_name, t.created_at);
            }
        }
    }
    Ok(())
}

fn vapid_command(conn: &mut AnyConnection, cmd: VapidCommand) -> Result<(), CliError> {
    use crate::push::vapid::{SECRET_NAME, VapidKey};
    let secret = match cmd {
        VapidCommand::Show => {
            crate::store::secrets::get_or_create(conn, SECRET_NAME, VapidKey::generate_secret)?
        }
        VapidCommand::Rotate => {
            let secret = VapidKey::generate_secret();
            crate::store::secrets::replace(conn, SECRET_NAME, &secret)?;
            eprintln!(
                "VAPID key replaced. Restart every node to sign with it and advertise it; \
                 browser subscriptions made with the old key must be made again."
            );
            secret
        }
    };
    let key = VapidKey::from_secret(&secret).map_err(|e| CliError::Usage(e.to_string()))?;
    println!("{}", key.public_key());
    Ok(())
}

fn alias_command(conn: &mut AnyConnection, cmd: AliasCommand) -> Result<(), CliError> {
    use crate::store::addresses;
    match cmd {
        AliasCommand::Add { address, to } => {
            addresses::add_alias(conn, &address, &to)?;
            println!("mail for {address} goes to {to}");
        }
        AliasCommand::List => {
            for alias in addresses::list_aliases(conn)? {
                println!("{}\t{}", alias.address, alias.user_name);
            }
        }
        AliasCommand::Remove { address } => {
            addresses::remove_alias(conn, &address)?;
            println!("alias {address} removed");
        }
    }
    Ok(())
}

fn account_command(conn: &mut AnyConnection, cmd: AccountCommand) -> Result<(), CliError> {
    match cmd {
        AccountCommand::Share {
            owner,
            with,
            read_only,
        } => {
            accounts::share(conn, &owner, &with, read_only)?;
            let how = if read_only { "read-only" } else { "read-write" };
            println!("account of {owner} shared with {with} ({how})");
        }
        AccountCommand::Unshare { owner, with } => {
            accounts::unshare(conn, &owner, &with)?;
            println!("account of {owner} no longer shared with {with}");
        }
    }
    Ok(())
}

/// `herald reindex`: one line per user, with how many emails were indexed again.
fn reindex(conn: &mut AnyConnection, names: Vec<String>) -> Result<(), CliError> {
    let names = if names.is_empty() {
        users::list(conn)?.into_iter().map(|u| u.name).collect()
    } else {
        names
    };
    for name in names {
        let user = users::find_by_name(conn, &name)?
            .ok_or_else(|| CliError::Usage(format!("no user {name:?}")))?;
        let account = accounts::personal_account(conn, &user.id)?;
        let n = crate::store::email_search::reindex_account(conn, &account)?;
        println!("{}\t{n} emails indexed again", user.name);
    }
    Ok(())
}

/// `herald check`: one line per mailbox whose counts differ, then a summary line. Differences
/// left unrepaired make the exit status non-zero.
fn check(conn: &mut AnyConnection, names: Vec<String>, repair: bool) -> Result<(), CliError> {
    use crate::store::mailbox_counts;
    let names = if names.is_empty() {
        users::list(conn)?.into_iter().map(|u| u.name).collect()
    } else {
        names
    };
    let (mut checked, mut wrong) = (0, 0);
    for name in names {
        let user = users::find_by_name(conn, &name)?
            .ok_or_else(|| CliError::Usage(format!("no user {name:?}")))?;
        let account = accounts::personal_account(conn, &user.id)?;
        let differences = mailbox_counts::check(conn, &account)?;
        checked += 1;
        for (mailbox, kept, counted) in &differences {
            println!("{name}\t{mailbox}\tmaintained: {kept}\tcounted: {counted}");
        }
        if !differences.is_empty() {
            wrong += 1;
            if repair {
                mailbox_counts::repair(conn, &account)?;
            }
        }
    }
    match (wrong, repair) {
        (0, _) => println!("{checked} accounts checked: counts are right"),
        (n, true) => println!("{checked} accounts checked: {n} repaired"),
        (n, false) => {
            return Err(CliError::Usage(format!(
                "{checked} accounts checked: {n} with wrong counts (run with --repair)"
            )));
        }
    }
    Ok(())
}

/// The password from `--password`, or the first line of standard input.
fn read_password(source: &PasswordSource) -> Result<String, CliError> {
    if let Some(p) = &source.password {
        return Ok(p.clone());
    }
    let mut line = String::new();
    if source.password_stdin {
        std::io::stdin().lock().read_line(&mut line)?;
    } else {
        std::io::stdin()
            .lock()
            .take(4096)
            .read_to_string(&mut line)?;
        line = line.lines().next().unwrap_or_default().to_owned();
    }
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage(
            "no password given: use --password or --password-stdin".into(),
        ));
    }
    Ok(password)
}

fn serve(config: Config) -> Result<(), CliError> {
    // Before the store is created or the first user printed: a value that cannot work stops the
    // start with nothing done.
    config.check()?;
    let store = Store::open(&config.store.url, crate::server::pool_size(&config))?;
    {
        let mut conn = store.conn()?;
        let password = crate::random::random_secret(18);
        if users::create_first(&mut conn, "admin", &password)?.is_some() {
            println!(
                "Created the first user. Log in with:\n  user:     admin\n  password: {password}\n(shown only this once; change it with `herald user passwd admin`)"
            );
        }
    }
    let listener = std::net::TcpListener::bind(&config.server.listen)
        .map_err(|e| CliError::Listen(config.server.listen.clone(), e))?;
    actix_web::rt::System::new().block_on(async move {
        let running = crate::server::start(&config, store, listener)?;
        log::info!(
            "Herald listening on {} (session: {}/jmap/session)",
            running.addr,
            running.base_url
        );
        // Graceful shutdown (SIGTERM, SIGINT) ends the server, then halts the webhook sender and
        // the cluster bus.
        running.run().await?;
        Ok(())
    })
}
