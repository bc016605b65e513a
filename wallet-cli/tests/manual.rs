//! `gridshare completions` and `gridshare man`: the real binary writes a
//! completion script for each shell and a manual page for every command.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;

fn gridshare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gridshare")).args(args).output().unwrap()
}

#[test]
fn completion_scripts_name_the_commands() {
    for (shell, marker) in
        [("bash", "_gridshare()"), ("zsh", "#compdef gridshare"), ("fish", "complete -c gridshare")]
    {
        let output = gridshare(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", String::from_utf8_lossy(&output.stderr));
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("offer") && script.contains("agent"), "{shell}");
    }
    let unknown = gridshare(&["completions", "cmd.exe"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn every_command_has_a_manual_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let output = gridshare(&["man", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for page in ["gridshare.1", "gridshare-offer-sell.1", "gridshare-agent-run.1", "gridshare-clear.1"] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}: {text}");
    }
    let sell = std::fs::read_to_string(out.join("gridshare-offer-sell.1")).unwrap();
    assert!(sell.contains("price"), "{sell}");
    // A file where the directory should be: refused, no panic.
    let file = dir.path().join("taken");
    std::fs::write(&file, "").unwrap();
    let refused = gridshare(&["man", "--out", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
}
