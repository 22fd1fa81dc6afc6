//! The command line is part of the product: `supervisor --help` and the
//! help of every subcommand, walked as a tree, must equal the recorded
//! tree in `fixtures/help.txt`. A change to the CLI shows here as a diff
//! to review; when it is meant, `BLESS=1 cargo test --test cli_help`
//! records the new tree.

mod support;

use std::path::Path;

use support::supervisor;

/// The help of `path` and of every subcommand below it, depth first.
fn walk(path: &mut Vec<String>, out: &mut String) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = supervisor(&args);
    assert!(
        help.success(),
        "supervisor {}: {}",
        args.join(" "),
        help.stderr
    );
    out.push_str(&format!(
        "==== supervisor {}\n{}\n",
        path.join(" "),
        help.stdout
    ));
    let mut in_commands = false;
    let mut children = Vec::new();
    for line in help.stdout.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            match line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            {
                Some("help") => {}
                Some(name) if !line.starts_with("   ") => children.push(name.to_owned()),
                Some(_) => {}
                None => in_commands = false,
            }
        }
    }
    for child in children {
        path.push(child);
        walk(path, out);
        path.pop();
    }
}

#[test]
fn the_help_tree_is_the_recorded_one() {
    let mut tree = String::new();
    walk(&mut Vec::new(), &mut tree);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/help.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&fixture, &tree).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&fixture).unwrap_or_default();
    if recorded != tree {
        let first = recorded
            .lines()
            .zip(tree.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(recorded.lines().count().min(tree.lines().count()));
        panic!(
            "the help tree changed (first difference at line {}):\nrecorded: {:?}\nnow:      {:?}\n\
             review it, then record it with BLESS=1 cargo test -p supervisor --test cli_help",
            first + 1,
            recorded.lines().nth(first),
            tree.lines().nth(first)
        );
    }
}
