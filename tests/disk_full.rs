//! A full disk: the spool folder, or the export folder, on a 2 MiB tmpfs the
//! test mounts. The export ends FAILED with the disk-full error and leaves
//! nothing behind, so the space is free again. Mounting needs root: without
//! it each test prints a notice and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::walk;
use fluxo::config::{ExportSpec, OptionValue, Settings};
use fluxo::schema::{ColumnType, Value};
use fluxo::task::registry::TaskState;
use fluxo::task::{self, Export};
use fluxo::{ErrorKind, ExportError};

/// A tmpfs mounted on a folder for the test's lifetime.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (after a notice) where mounting is not allowed.
    fn mount(dir: &Path, test: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "fluxo-disk-full"])
            .arg(dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self {
                dir: dir.to_owned(),
            }),
            Ok(out) => Self::skip(test, &String::from_utf8_lossy(&out.stderr)),
            Err(e) => Self::skip(test, &e.to_string()),
        }
    }

    fn skip(test: &str, why: &str) -> Option<Self> {
        eprintln!(
            "SKIPPED {test}: cannot mount a tmpfs ({}); the disk-full tests need root",
            why.trim()
        );
        None
    }

    /// Free blocks, as `statfs` counts them.
    fn free_blocks(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%f"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open elsewhere must not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn settings(dir: &Path) -> Settings {
    let (out, work) = (dir.join("out"), dir.join("work"));
    Settings::resolve_with_env(
        |key| match key {
            "local_dir" => Some(out.display().to_string()),
            "work_dir" => Some(work.display().to_string()),
            _ => None,
        },
        |_| None,
    )
    .unwrap()
}

/// Feeds up to `rows` rows (~100 bytes each, hard to compress) until the
/// export fails; returns its task id and the first error.
fn export_until_failure(settings: &Settings, format: &str, rows: u64) -> (String, ExportError) {
    let s = |v: &str| OptionValue::Str(v.into());
    let options = OptionValue::Map(vec![
        ("format".into(), s(format)),
        (
            "columns".into(),
            OptionValue::List(vec![s("Id"), s("Digest")]),
        ),
    ]);
    let spec = ExportSpec::from_options(&options, settings).unwrap();
    let mut export = Export::start(spec, settings).unwrap();
    let id = export.task_id().to_owned();
    for start in (0..rows).step_by(5_000) {
        let mut batch = export.new_batch();
        for i in start..start + 5_000 {
            let digest = format!("{:032x}{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), !i);
            batch.push(Value::Int(i as i64), ColumnType::Auto).unwrap();
            batch
                .push(Value::Bytes(digest.as_bytes()), ColumnType::Auto)
                .unwrap();
            batch.end_row();
        }
        if let Err(e) = export.add(batch) {
            return (id, e);
        }
    }
    let err = export.finish().expect_err("the file cannot fit");
    (id, err)
}

/// FAILED with the disk-full error, the same in the status, and every file
/// of the export gone from `full`.
fn assert_failed_and_freed(
    settings: &Settings,
    id: &str,
    err: &ExportError,
    full: &Tmpfs,
    free_at_start: u64,
) {
    assert_eq!(err.kind, ErrorKind::Storage, "{err}");
    assert!(err.message.contains("No space left on device"), "{err}");
    let status = task::status(settings, id).unwrap().unwrap();
    assert_eq!(status.state, TaskState::Failed, "{status:?}");
    assert_eq!(status.error.as_deref(), Some(err.message.as_str()));
    assert_eq!(walk(&full.dir), Vec::<PathBuf>::new(), "files left");
    assert_eq!(full.free_blocks(), free_at_start, "space not freed");
}

fn spool_full(format: &str, test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(spool) = Tmpfs::mount(&dir.path().join("work/spool"), test) else {
        return;
    };
    let free = spool.free_blocks();
    let settings = settings(dir.path());
    // ~50 MB: far more than fits; writing stops at the first error.
    let (id, err) = export_until_failure(&settings, format, 500_000);
    assert!(err.message.contains("/work/spool/"), "{err}");
    assert_failed_and_freed(&settings, &id, &err, &spool, free);
}

#[test]
fn a_full_spool_disk_fails_a_csv_export_and_frees_the_space() {
    spool_full(
        "csv",
        "a_full_spool_disk_fails_a_csv_export_and_frees_the_space",
    );
}

#[test]
fn a_full_spool_disk_fails_an_xlsx_export_and_frees_the_space() {
    spool_full(
        "xlsx",
        "a_full_spool_disk_fails_an_xlsx_export_and_frees_the_space",
    );
}

#[test]
fn a_full_export_folder_fails_the_move_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(out) = Tmpfs::mount(
        &dir.path().join("out"),
        "a_full_export_folder_fails_the_move_and_leaves_no_partial_file",
    ) else {
        return;
    };
    let free = out.free_blocks();
    let settings = settings(dir.path());
    // The spool is on another disk: the finished file is copied over.
    let (id, err) = export_until_failure(&settings, "csv", 50_000);
    assert!(err.message.contains("cannot copy the file to"), "{err}");
    assert_failed_and_freed(&settings, &id, &err, &out, free);
    let spool = walk(&dir.path().join("work/spool"));
    assert_eq!(spool, Vec::<PathBuf>::new(), "spool file left");
}
