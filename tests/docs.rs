//! The man pages keep up with the program: every command, short form and option of `--help`
//! is in skyrep(1), every key of `--ini` in skyrep(5), both pages render without warnings
//! where `man` exists, and the README's examples are what skyrep accepts: every command line
//! parses and the Londiste 3 user's config loads.

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
fn every_short_form_and_option_is_in_the_help_and_the_man_page() {
    let (_, help, _) = run(&["--help"]);
    let help_line = help
        .lines()
        .find(|l| l.starts_with("  tables, "))
        .expect("--help lists the short forms");
    let man_line = MAN1
        .lines()
        .find(|l| l.starts_with(".BR tables "))
        .expect("skyrep.1 lists the short forms");
    fn words(line: &str) -> Vec<&str> {
        line.split([' ', ',', '"'])
            .filter(|w| !w.is_empty())
            .collect()
    }
    let (help_words, man_words) = (words(help_line), words(man_line));
    for (word, command) in skyrep::cli::SHORT_FORMS {
        if command.starts_with("subscriber ") {
            assert!(help_words.contains(word), "--help lacks short form {word}");
            assert!(
                man_words.contains(&word.replace('-', "\\-").as_str()),
                "skyrep.1 lacks short form {word}"
            );
        } else {
            assert!(
                help.contains(&format!("(alias: {word})")),
                "--help lacks alias {word}"
            );
            assert!(
                MAN1.contains(&format!("\n.BR {word} ")),
                "skyrep.1 lacks alias {word}"
            );
        }
    }
    let options: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Options:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // Not the lines that go on describing the option above.
        .filter(|l| l.trim_start().starts_with('-'))
        .collect();
    assert!(options.len() > 8, "{options:?}");
    for line in options {
        let names: Vec<String> = line
            .split_whitespace()
            .take_while(|w| w.starts_with('-'))
            .map(|w| w.trim_end_matches(',').replace('-', "\\-"))
            .collect();
        let man = match names.as_slice() {
            [short, long] => format!(".BR {short} \", \" {long}\n"),
            [long] => format!(".B {long}\n"),
            _ => panic!("option line `{line}`"),
        };
        assert!(MAN1.contains(&man), "skyrep.1 lacks `{man}` for `{line}`");
    }
}

/// Every `skyrep ...` line in the README's examples is a command line skyrep accepts.
#[test]
fn every_command_line_in_the_readme_parses() {
    let readme = include_str!("../README.md");
    let mut checked = 0;
    for line in readme.lines() {
        let Some(example) = line.strip_prefix("    skyrep ") else {
            continue;
        };
        let args: Vec<std::ffi::OsString> = example
            .split_whitespace()
            .take_while(|w| !["#", "&", ">", "|"].contains(w))
            .map(Into::into)
            .collect();
        if let Err(e) = skyrep::cli::parse(args) {
            panic!("README: `{}`: {e:#}", line.trim());
        }
        checked += 1;
    }
    assert!(checked > 15, "{checked} command lines found");
}

/// The Londiste 3 user's config in the README loads without a warning and names both
/// databases.
#[test]
fn the_readme_londiste_3_config_loads() {
    let readme = include_str!("../README.md");
    let text: String = readme
        .lines()
        .skip_while(|l| *l != "    [londiste3]")
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(text.contains("queue_name"), "{text}");
    let config =
        skyrep::config::Config::parse(std::path::Path::new("dst1.ini"), &text).expect("loads");
    assert_eq!(config.warnings(), [] as [String; 0]);
    for key in ["provider_db", "subscriber_db"] {
        assert!(config.require_connstr(key).is_ok(), "{key}");
    }
    assert_eq!(config.require_text("pgq_queue_name").unwrap(), "replika");
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
