//! The one error type of the engine. Its kind decides which exception a
//! front end raises; its message says what is at fault and where.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// An option or setting is unknown or has a wrong value.
    InvalidOption,
    /// A row or cell cannot be written.
    InvalidRow,
    /// The file could not be written or stored (disk, store, permissions).
    Storage,
    /// The export was cancelled.
    Cancelled,
    /// No export slot came free within `fluxo.queue_timeout`: retry later.
    Busy,
    /// Anything else: a writer failure, a wrong call order. Also what a
    /// status file written by a newer build with a kind this one does not
    /// know reads as.
    #[serde(other)]
    Export,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// The longest message kept whole. Messages quote what they were given (a
/// task id, a sheet name, a key), and gRPC sends a message in a header
/// that clients refuse past 16 KiB, percent-encoded: a 100 KB task id
/// echoed whole left the client with no message at all.
const MESSAGE_LIMIT: usize = 2_000;

/// `message`, or its start and end with what lies between left out.
fn shortened(message: String) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message;
    }
    let mut head = MESSAGE_LIMIT * 3 / 5;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - MESSAGE_LIMIT / 4;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}… ({} bytes left out) …{}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

impl ExportError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: shortened(message.into()),
        }
    }

    /// The same kind of error with another message, kept within the same
    /// limit: what code adds to a message it passes on (the upload's
    /// location, the retries) counts too.
    pub fn reworded(self, message: String) -> Self {
        Self::new(self.kind, message)
    }

    pub fn invalid_option(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidOption, message)
    }

    pub fn invalid_row(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRow, message)
    }

    pub fn export(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Export, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message)
    }

    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "the export was cancelled")
    }

    /// A caught panic, as an error that says where it happened.
    pub fn from_panic(payload: &(dyn std::any::Any + Send), place: &str) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Self::export(format!("internal error in {place}: {what}"))
    }

    /// An I/O failure on `path` while doing `what`.
    pub fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        let owner = if err.kind() == std::io::ErrorKind::PermissionDenied {
            // SAFETY: geteuid has no preconditions and cannot fail.
            other_owner(path, unsafe { libc::geteuid() }, can_write_in)
        } else {
            String::new()
        };
        Self::new(
            ErrorKind::Storage,
            format!("{what} {}: {err}{owner}", path.display()),
        )
    }
}

/// For a path this process was refused: whose it is, when another user's.
/// Running a script once as root (or as yourself) leaves the default
/// folders in /tmp to that user, and PHP-FPM's user is refused there. The
/// path itself if it exists, else the nearest folder above it that this
/// process cannot write in (`/tmp` itself is root's, and writable).
fn other_owner(
    path: &std::path::Path,
    me: u32,
    can_write_in: fn(&std::path::Path) -> bool,
) -> String {
    use std::os::unix::fs::MetadataExt;
    let blamed = match std::fs::symlink_metadata(path) {
        Ok(meta) => Some((path, meta)),
        Err(_) => path.ancestors().skip(1).find_map(|dir| {
            let meta = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
            Some((dir, meta))
        }),
    };
    blamed
        .filter(|(found, meta)| meta.uid() != me && !(meta.is_dir() && can_write_in(found)))
        .map_or_else(String::new, |(found, meta)| {
            format!(
                "; {} {} belongs to {} and this process runs as {}: give this user access, \
                 or set fluxo.local_dir and fluxo.work_dir to folders it owns",
                if meta.is_dir() {
                    "the folder"
                } else {
                    "the file"
                },
                found.display(),
                user(meta.uid()),
                user(me)
            )
        })
}

/// Whether this process may create files in `dir` (its effective ids).
fn can_write_in(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `dir` is a NUL-terminated path alive for the call, which
    // only reads it.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            dir.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

/// `user root (uid 0)`, or `uid 1234` for an id with no name on this host.
fn user(uid: u32) -> String {
    // Directory services' entries can outgrow 1 KiB: grow on ERANGE.
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local, `buffer` of the length
        // given; getpwuid_r writes the entry and the strings it points to
        // into them (ERANGE if they do not fit), and sets `found` to the
        // entry or null.
        let answer = unsafe {
            libc::getpwuid_r(
                uid,
                entry.as_mut_ptr(),
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if answer == libc::ERANGE && buffer.len() < 64 * 1024 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if answer != 0 || found.is_null() {
            return format!("uid {uid}");
        }
        // SAFETY: `found` is the entry just written, its pw_name a C string
        // in `buffer`, both alive here.
        let name = unsafe { std::ffi::CStr::from_ptr((*found).pw_name) };
        return format!("user {} (uid {uid})", name.to_string_lossy());
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExportError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reworded_message_keeps_to_the_limit() {
        let cause = ExportError::new(ErrorKind::Storage, "x".repeat(1_900));
        let e = cause.reworded(format!(
            "upload to s3://bucket/{} failed",
            "k".repeat(3_000)
        ));
        assert_eq!(e.kind, ErrorKind::Storage);
        assert!(e.message.len() < MESSAGE_LIMIT + 100, "{}", e.message.len());
        assert!(e.message.ends_with("kk failed"), "{}", e.message);
    }

    #[test]
    fn a_long_message_keeps_its_start_and_end() {
        let id = "é".repeat(50_000);
        let e = ExportError::invalid_row(format!("task id \"{id}\" is malformed: expected a UUID"));
        assert!(e.message.len() < MESSAGE_LIMIT + 100, "{}", e.message.len());
        assert!(e.message.starts_with("task id \"éé"));
        assert!(e.message.ends_with("éé\" is malformed: expected a UUID"));
        // 100,040 bytes: the first 1,199 (the last whole é before 1,200)
        // and the last 499 (from the first é boundary after 99,540) are kept.
        assert!(
            e.message.contains("… (98342 bytes left out) …"),
            "{}",
            e.message
        );
        let short = "row 3: has 2 cells, expected 3";
        assert_eq!(ExportError::invalid_row(short).message, short);
    }

    #[test]
    fn permission_denied_names_the_owner_when_another_user() {
        let never = |_: &std::path::Path| false;
        let lock = std::path::Path::new("/no-such-folder/x.lock");
        let advice =
            "give this user access, or set fluxo.local_dir and fluxo.work_dir to folders it owns";
        assert_eq!(
            other_owner(lock, 4_000_000_000, never),
            format!(
                "; the folder / belongs to user root (uid 0) and this process runs as uid 4000000000: {advice}"
            )
        );
        assert_eq!(
            other_owner(std::path::Path::new("/"), 4_000_000_000, never),
            other_owner(lock, 4_000_000_000, never),
            "a folder is its own"
        );
        let file = std::path::Path::new("/etc/passwd");
        assert_eq!(
            other_owner(file, 4_000_000_000, never),
            format!(
                "; the file /etc/passwd belongs to user root (uid 0) and this process runs as uid 4000000000: {advice}"
            ),
            "an existing file is named, not its folder"
        );
        assert_eq!(
            other_owner(lock, 4_000_000_000, |_| true),
            "",
            "a folder it may write in is not to blame (/tmp)"
        );
        assert_eq!(other_owner(lock, 0, never), "", "root's own folder");
        let other = ExportError::io(
            "cannot create",
            lock,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            other.message,
            "cannot create /no-such-folder/x.lock: entity not found"
        );
        assert_eq!(user(0), "user root (uid 0)");
        assert_eq!(user(4_000_000_000), "uid 4000000000");
    }

    #[test]
    fn a_panic_becomes_an_error_naming_its_place() {
        let payload = std::panic::catch_unwind(|| panic!("bad {}", 1)).unwrap_err();
        let err = ExportError::from_panic(payload.as_ref(), "the export worker");
        assert_eq!(err.kind, ErrorKind::Export);
        assert_eq!(err.message, "internal error in the export worker: bad 1");
        let payload = std::panic::catch_unwind(|| std::panic::panic_any(7)).unwrap_err();
        assert!(ExportError::from_panic(payload.as_ref(), "x")
            .message
            .ends_with("unknown panic"));
    }

    #[test]
    fn a_kind_from_a_newer_build_reads_as_export() {
        let read = |json: &str| serde_json::from_str::<ErrorKind>(json).unwrap();
        assert_eq!(read("\"busy\""), ErrorKind::Busy);
        assert_eq!(read("\"quota_exceeded\""), ErrorKind::Export);
    }
}
