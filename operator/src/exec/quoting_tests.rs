//! Quoting tests: rendered commands run through a real local `/bin/sh` must deliver every
//! hostile argument as one literal argv entry and never execute any of it.

use std::process::Command;

use super::*;

const HOSTILE: &[&str] = &[
    "'; touch MARKER #",
    "$(touch MARKER)",
    "`touch MARKER`",
    "a\nb; touch MARKER",
    "\"; touch MARKER; \"",
    "x && touch MARKER",
    "${IFS}touch${IFS}MARKER",
    "*",
    "",
    " lead and trail ",
    "back\\slash",
    "-n",
    "ünïcødé ☃",
    "a'b'c",
    "|touch MARKER",
];

fn hostile_args(dir: &std::path::Path) -> Vec<String> {
    let marker = dir.join("pwned");
    HOSTILE
        .iter()
        .map(|a| a.replace("MARKER", marker.to_str().unwrap()))
        .collect()
}

/// Run a rendered command line locally with `sh -c` in `dir`, return the NUL-split stdout.
fn sh(line: &str, dir: &std::path::Path) -> Vec<String> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts: Vec<String> = text.split('\0').map(str::to_string).collect();
    assert_eq!(parts.pop().as_deref(), Some(""), "output ends with NUL");
    parts
}

#[test]
fn hostile_args_arrive_literally_with_new() {
    let dir = tempfile::tempdir().unwrap();
    let args = hostile_args(dir.path());
    let cmd = Cmd::new("printf").arg("%s\\0").args(args.clone());
    assert_eq!(sh(&cmd.to_shell(false), dir.path()), args);
    assert!(
        !dir.path().join("pwned").exists(),
        "marker file was created"
    );
}

#[test]
fn hostile_args_arrive_literally_on_the_wire_form() {
    let dir = tempfile::tempdir().unwrap();
    let args = hostile_args(dir.path());
    let cmd = Cmd::new("printf")
        .arg("%s\\0")
        .args(args.clone())
        .timeout(std::time::Duration::from_secs(7));
    let wire = cmd.to_wire(false);
    assert!(wire.starts_with("timeout -k 5 8 printf "), "{wire}");
    assert_eq!(sh(&wire, dir.path()), args);
    assert!(
        cmd.to_wire(true)
            .starts_with("sudo -n -- timeout -k 5 8 printf ")
    );
    assert!(
        !dir.path().join("pwned").exists(),
        "marker file was created"
    );
}

#[test]
fn hostile_args_arrive_literally_with_script() {
    let dir = tempfile::tempdir().unwrap();
    let args = hostile_args(dir.path());
    let cmd = Cmd::script(r#"for a in "$@"; do printf '%s\0' "$a"; done"#).args(args.clone());
    assert_eq!(sh(&cmd.to_shell(false), dir.path()), args);
    assert!(
        !dir.path().join("pwned").exists(),
        "marker file was created"
    );
}

#[test]
fn hostile_program_name_is_quoted_too() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let cmd = Cmd::new(format!("true; touch {}", marker.display()));
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd.to_shell(false))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a program with that name does not exist"
    );
    assert!(!marker.exists());
}

#[test]
fn rendering_sudo_and_display() {
    let cmd = Cmd::new("systemctl")
        .arg("restart")
        .arg("patroni@main x")
        .stdin("pw=hunter2");
    assert_eq!(cmd.to_shell(false), "systemctl restart 'patroni@main x'");
    assert_eq!(
        cmd.to_shell(true),
        "sudo -n -- systemctl restart 'patroni@main x'"
    );
    assert_eq!(cmd.to_string(), "systemctl restart 'patroni@main x'");
    let dbg = format!("{cmd:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("stdin_len: Some(10)"), "{dbg}");
    assert_eq!(cmd.timeout_duration(), DEFAULT_TIMEOUT);
    let s = Cmd::script("echo \"$1\"").arg("a b");
    assert_eq!(s.to_shell(true), r#"sudo -n -- sh -c 'echo "$1"' sh 'a b'"#);
    assert_eq!(
        Cmd::new("x").timeout(INSTALL_TIMEOUT).timeout_duration(),
        INSTALL_TIMEOUT
    );
}

#[test]
fn upload_cmd_keeps_content_off_the_command_line() {
    let cmd = upload_cmd(
        "/etc/x y.conf",
        b"password=hunter2\n",
        0o640,
        "postgres",
        "root",
    );
    let line = cmd.to_shell(true);
    assert!(!line.contains("hunter2"), "{line}");
    assert_eq!(cmd.stdin_bytes(), Some(&b"password=hunter2\n"[..]));
    let args = cmd.arguments();
    assert_eq!(args[0], "/etc/x y.conf");
    assert!(args[1].starts_with("/etc/x y.conf.pgmetal-tmp."));
    assert_eq!(&args[2..], ["0640", "postgres:root"]);
}

#[test]
fn upload_script_works_locally() {
    // Run the upload script as the current user (chown to ourselves is allowed).
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("out.conf");
    std::fs::write(&dst, "old").unwrap();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let group = String::from_utf8(Command::new("id").arg("-gn").output().unwrap().stdout).unwrap();
    let cmd = upload_cmd(
        dst.to_str().unwrap(),
        b"new\n",
        0o600,
        user.trim(),
        group.trim(),
    );
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd.to_shell(false))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cmd.stdin_bytes().unwrap())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read(&dst).unwrap(), b"new\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dst).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "temp file left behind");
}

#[test]
fn output_check_and_tail() {
    let out = Output {
        host: "h".into(),
        cmd_display: "false".into(),
        status: 1,
        stderr: (1..=30)
            .map(|i| format!("line {i}\n"))
            .collect::<String>()
            .into_bytes(),
        ..Default::default()
    };
    let e = out.check("do it").unwrap_err();
    let ExecError::Failed { stderr_tail, .. } = &e else {
        panic!()
    };
    assert!(
        stderr_tail.starts_with("line 21\n") && stderr_tail.ends_with("line 30"),
        "{stderr_tail}"
    );
    assert!(
        e.to_string()
            .starts_with("h: do it failed (exit status 1): `false`"),
        "{e}"
    );
    assert_eq!(e.host(), "h");
}
