//! A private Postfix instance (Debian's package) for one test: its own configuration, queue and
//! log in a temporary directory, SMTP on a loopback port, and every message for `domain` handed
//! to an LMTP server (`virtual_transport = lmtp:inet:…`), as a production Postfix in front of
//! Herald is set up (docs/operating.md). Unknown recipients are refused during the SMTP
//! transaction by Postfix's recipient address verification, which asks the LMTP server.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::missing;

const POSTFIX: &str = "/usr/sbin/postfix";

pub struct PrivatePostfix {
    dir: tempfile::TempDir,
    /// Where it accepts SMTP: `127.0.0.1:PORT`.
    pub smtp: String,
}

impl PrivatePostfix {
    /// Starts an instance that relays mail for `domain` to the LMTP server at `lmtp`
    /// (`host:port`). Waits until it accepts SMTP.
    pub fn start(domain: &str, lmtp: &str) -> PrivatePostfix {
        assert!(
            Path::new(POSTFIX).exists(),
            "{}",
            missing("Postfix", "postfix")
        );
        // The master daemon starts as root and drops to `postfix` (CI runs the tests as root).
        assert_eq!(
            uid_of_current(),
            0,
            "a private Postfix needs root: its master daemon switches to the postfix user"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_owned();
        // Postfix's daemons run as `postfix`: they must reach the queue and data directories.
        set_mode(&root, 0o755);
        let postfix_uid = uid_of("postfix");
        for sub in ["queue", "data"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::os::unix::fs::chown(root.join("data"), Some(postfix_uid), None).unwrap();
        let port = free_port();
        let root_s = root.display().to_string();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {root_s}/queue\n\
             data_directory = {root_s}/data\n\
             maillog_file = {root_s}/maillog\n\
             maillog_file_prefixes = {root_s}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mx.herald.test\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_peername_lookup = no\n\
             virtual_mailbox_domains = {domain}\n\
             virtual_transport = lmtp:inet:{lmtp}\n\
             smtpd_recipient_restrictions = reject_unverified_recipient\n\
             unverified_recipient_reject_code = 550\n\
             address_verify_map =\n"
        );
        std::fs::write(root.join("main.cf"), main_cf).unwrap();
        // The services a mail hub needs, none chrooted (the chroot would need a copy of /etc).
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             lmtp unix - - n - - lmtp\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(root.join("master.cf"), master_cf).unwrap();
        let instance = PrivatePostfix {
            dir,
            smtp: format!("127.0.0.1:{port}"),
        };
        // `postfix start` returns once the master daemon is initialised (`master -w`).
        let out = instance.postfix("start");
        assert!(
            out.status.success(),
            "postfix start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            instance.log()
        );
        instance
    }

    /// Postfix's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn postfix(&self, command: &str) -> std::process::Output {
        let config: PathBuf = self.dir.path().to_owned();
        Command::new(POSTFIX)
            .arg("-c")
            .arg(&config)
            .arg(command)
            .output()
            .expect("run postfix")
    }
}

impl Drop for PrivatePostfix {
    fn drop(&mut self) {
        let _ = self.postfix("abort");
    }
}

fn uid_of_current() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process creates is its effective uid.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid()
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {user}: {}", missing("Postfix", "postfix")))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
