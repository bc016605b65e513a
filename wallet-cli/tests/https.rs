//! The CLI reaches a node behind an https reverse proxy whose certificate a
//! private CA signed: a real dev node, a TLS proxy in front of it (Python's
//! `ssl` and `http.server`) with a certificate that `openssl` made for a CA
//! made here. With `--ca-cert` (or `$GRIDSHARE_CA_CERT`) the commands work,
//! JSON requests and the streamed export alike; without it the handshake
//! fails with exit status 2 (trying again would not help) and a message
//! that says what to give; a file with no certificate is refused.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{DevNode, text};

/// A reverse proxy with TLS: every GET and POST forwarded to UPSTREAM.
const PROXY: &str = r#"
import http.server, ssl, sys, urllib.error, urllib.request

upstream, certificate, key = sys.argv[1], sys.argv[2], sys.argv[3]

class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(upstream + self.path, data=body, method=self.command)
        for name in ("Content-Type", "Accept"):
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        data = response.read()
        self.send_response(response.status)
        self.send_header("Content-Type", response.headers.get("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Runs `openssl` with `args` in `dir`; installs it first when it is
/// missing and this runs as root (as CI does).
fn openssl(dir: &Path, args: &[&str]) {
    let installed = Command::new("openssl").arg("version").output().is_ok_and(|out| out.status.success());
    if !installed {
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "openssl"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "this test needs openssl: apt-get install openssl"
        );
    }
    let output = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {}", text(&output.stderr));
}

/// A CA (`ca.pem`) and a certificate it signed for localhost and 127.0.0.1
/// (`server.pem`, `server.key`).
fn private_ca(dir: &Path) {
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Gridshare test CA", "-keyout", "ca.key"];
    ca.extend(curve);
    ca.extend([
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut request = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
    request.extend(curve);
    openssl(dir, &request);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// The proxy, killed when dropped, and its port.
struct Proxy(Child, u16);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxy(dir: &Path, upstream: &str) -> Proxy {
    std::fs::write(dir.join("proxy.py"), PROXY).unwrap();
    let mut child = Command::new("python3")
        .arg(dir.join("proxy.py"))
        .args([upstream, "server.pem", "server.key"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("this test needs python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the proxy printed {line:?}, not its port"));
    Proxy(child, port)
}

fn gridshare(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridshare"));
    command.args(args).env_remove("GRIDSHARE_NODE").env_remove("GRIDSHARE_CA_CERT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn the_cli_reaches_a_node_behind_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    private_ca(dir.path());
    let node = DevNode::start(dir.path());
    let proxy = proxy(dir.path(), &node.api);
    let url = format!("https://localhost:{}", proxy.1);
    let ca = dir.path().join("ca.pem");
    let ca_arg = ca.to_str().unwrap();

    // JSON requests through the proxy: the market, as the node has it.
    let output =
        gridshare(&["--node", &url, "--ca-cert", ca_arg, "market", "--interval", "next", "--json"], &[]);
    assert!(output.status.success(), "{}{}", text(&output.stderr), node.log());
    let market: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(market.get("interval").is_some_and(serde_json::Value::is_u64), "{market}");

    // The streamed export through the proxy, the CA from the environment.
    let output = gridshare(&["--node", &url, "audit"], &[("GRIDSHARE_CA_CERT", &ca)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("Audit           PASSED"), "{}", text(&output.stdout));

    // Without the CA: the public web's roots do not know it.
    let output = gridshare(&["--node", &url, "market", "--json"], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "not worth retrying: {stderr}");
    assert!(stderr.contains("TLS with https://localhost") && stderr.contains("private CA"), "{stderr}");

    // A CA file with no certificate in it, and one that is not there.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let output = gridshare(&["--node", &url, "--ca-cert", garbage.to_str().unwrap(), "market"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not usable"), "{}", text(&output.stderr));
    let output = gridshare(&["--node", &url, "--ca-cert", "/nonexistent/ca.pem", "market"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read the CA certificate"), "{}", text(&output.stderr));
}
