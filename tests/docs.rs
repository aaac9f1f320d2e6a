//! The man pages keep up with the program: every command in `--help` is in skyrep(1), every
//! key of `--ini` in skyrep(5), and both pages render without warnings where `man` exists.

use std::process::Command;

use crate::cli::run;

const MAN1: &str = include_str!("../man/skyrep.1");
const MAN5: &str = include_str!("../man/skyrep.5");

#[test]
fn every_command_is_in_the_help_and_the_man_page() {
    let (_, help, _) = run(&["--help"]);
    for command in skyrep::cli::COMMANDS {
        assert!(
            help.contains(&format!("\n  {command}")),
            "--help lacks command {command}"
        );
        assert!(
            MAN1.lines()
                .any(|l| l.starts_with(&format!(".B {command}"))),
            "skyrep.1 lacks command {command}"
        );
    }
}

#[test]
fn every_key_in_the_sample_config_is_in_the_man_page() {
    let (_, sample, _) = run(&["--ini"]);
    let keys: Vec<&str> = sample
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once(" =").map(|(k, _)| k))
        .filter(|k| !k.contains(' '))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        assert!(
            MAN5.contains(&format!(".B {key}\n")) || MAN5.contains(&format!(".BR {key} ")),
            "skyrep.5 lacks key {key}"
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("man is not installed; rendering not checked");
        return;
    }
    for page in ["man/skyrep.1", "man/skyrep.5"] {
        let out = Command::new("man")
            .args(["--warnings", "-l", page])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs");
        assert!(out.status.success(), "{page}");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "{page}: {warnings}");
    }
}
