//! End-to-end tests of `gridshare keys`: create, list, show, export and
//! import through the real binary, with passphrases from the environment.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn keys(dir: &Path, passphrase: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridshare"));
    command.arg("--keystore").arg(dir).arg("keys").args(args);
    command.env_remove("GRIDSHARE_PASSPHRASE").env_remove("GRIDSHARE_KEYSTORE");
    if let Some(passphrase) = passphrase {
        command.env("GRIDSHARE_PASSPHRASE", passphrase);
    }
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn keys_are_created_listed_exported_and_imported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let created = keys(d, Some("s3cret phrase"), &["new", "home"], "");
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    assert!(stdout.starts_with("Created account key `home`: "), "{stdout}");
    let public_key = stdout.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(public_key.len(), 64);

    let meter = keys(d, None, &["new", "home-meter", "--role", "meter", "--insecure-plaintext"], "");
    assert!(meter.status.success(), "{}", text(&meter.stderr));

    let listed = text(&keys(d, None, &["list"], "").stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[0].starts_with("NAME") && lines[1].starts_with("home ") && lines[2].starts_with("home-meter")
    );
    assert!(lines[1].contains("account") && lines[1].ends_with("yes"), "{listed}");
    assert!(lines[2].contains("meter") && lines[2].ends_with("NO"), "{listed}");

    let shown: serde_json::Value =
        serde_json::from_slice(&keys(d, None, &["show", "home", "--json"], "").stdout).unwrap();
    assert_eq!(shown["public_key"], public_key.as_str());
    assert_eq!(shown["encrypted"], true);

    // The secret comes out only with the passphrase, and goes back in.
    let wrong = keys(d, Some("not it"), &["export", "home"], "");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("wrong passphrase for key `home`"), "{}", text(&wrong.stderr));
    let exported = keys(d, Some("s3cret phrase"), &["export", "home"], "");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let seed = text(&exported.stdout);
    let imported = keys(d, Some("another phrase"), &["import", "copy"], &seed);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(text(&imported.stdout).ends_with(&format!("{public_key}\n")), "{}", text(&imported.stdout));
}

#[test]
fn bad_key_requests_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(keys(d, None, &["new", "a", "--insecure-plaintext"], "").status.success());
    let cases: &[(&[&str], Option<&str>, &str, &str)] = &[
        (&["new", "a", "--insecure-plaintext"], None, "", "a key named `a` already exists"),
        (&["new", "Bad/Name", "--insecure-plaintext"], None, "", "is not a key name"),
        (&["show", "nobody"], None, "", "no key named `nobody`"),
        (&["new", "b"], Some(""), "", "an empty passphrase protects nothing"),
        (&["import", "c", "--insecure-plaintext"], None, "xyz\n", "a secret key is 64 hex digits"),
        (&["new", "d", "--role", "owner"], None, "", "invalid value 'owner'"),
    ];
    for (args, passphrase, stdin, expected) in cases {
        let output = keys(d, *passphrase, args, stdin);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
    }
}
