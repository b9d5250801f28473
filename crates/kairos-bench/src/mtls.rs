//! Token grants over mutual TLS: the server on its native TLS listener asking for client
//! certificates, the bench's clients each showing an X.509-SVID (made with openssl under a
//! CA of the bench's own) of the workload whose platform token they exchange. Each grant
//! then verifies the SVID against its trust domain's bundle, checks that both credentials
//! name one identity, and binds the token to the certificate (RFC 8705, its thumbprint
//! written beside the request). Beside it, the same exchanges over TLS without a client
//! certificate on the same listener.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::guard::ScratchDir;
use crate::load::{self, LoadResult, MakeRequest};
use crate::{Plan, server};

const SPIFFE_ID: &str = "spiffe://bench.example.org/ns/ci/sa/nightly-backup";

/// Makes a CA, the server's certificate for 127.0.0.1 and the workload's SVID in `dir`.
fn certificates(dir: &Path) -> anyhow::Result<()> {
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl (needed for the mTLS figure's certificates)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=kairos bench CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(dir.join("server.ext"), "subjectAltName = IP:127.0.0.1\n")?;
    std::fs::write(
        dir.join("svid.ext"),
        format!(
            "subjectAltName = URI:{SPIFFE_ID}\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n"
        ),
    )?;
    for name in ["server", "svid"] {
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            ]
            .concat(),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ])?;
    }
    Ok(())
}

/// Token grants over TLS without, then with, a client certificate (an X.509-SVID).
pub async fn measure(
    kairos: &Path,
    issuer: &Arc<server::Issuer>,
    form: &[(&'static str, String)],
    plan: Plan,
) -> anyhow::Result<(LoadResult, LoadResult)> {
    let dir = ScratchDir::new("mtls")?;
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls)?;
    certificates(&tls)?;
    let cfg = dir.path().join("cfg");
    std::fs::create_dir_all(&cfg)?;
    std::fs::copy(tls.join("ca.crt"), cfg.join("bench-bundle.pem"))?;
    // The workload maps by its platform token and by its SPIFFE ID (the same identity).
    let extras = server::ConfigExtras {
        toml:
            "\n[[trust_domain]]\nname = \"bench.example.org\"\nbundle_file = \"bench-bundle.pem\"\n"
                .into(),
        cedar: String::new(),
    };
    let config = server::write_config(&cfg, issuer, &extras)?;
    let text = std::fs::read_to_string(&config)?.replace(
        "kind = \"ci-job\"\nissuer = \"ci\"",
        &format!("kind = \"ci-job\"\nspiffe_id = \"{SPIFFE_ID}\"\nissuer = \"ci\""),
    );
    std::fs::write(&config, text)?;
    let arg = |p: &str| tls.join(p).to_string_lossy().into_owned();
    let server = server::Server::start(
        kairos,
        &server::ServerOptions {
            data: dir.path().join("data"),
            config,
            log: dir.path().join("server.log"),
            store: None,
            envs: Vec::new(),
            args: vec![
                "--tls-cert-file".into(),
                arg("server.crt"),
                "--tls-key-file".into(),
                arg("server.key"),
                "--tls-client-ca-file".into(),
                arg("ca.crt"),
                "--tls-client-auth".into(),
                "optional".into(),
            ],
        },
    )?;
    eprintln!("kairos server (TLS) at {}", server.addr);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt"))?)?;
    let client = |identity: Option<reqwest::Identity>| -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .pool_max_idle_per_host(plan.clients)
            .timeout(std::time::Duration::from_secs(30))
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone());
        if let Some(id) = identity {
            b = b.identity(id);
        }
        Ok(b.build()?)
    };
    let mut pem = std::fs::read(tls.join("svid.crt"))?;
    pem.extend(std::fs::read(tls.join("svid.key"))?);
    let with_svid = client(Some(reqwest::Identity::from_pem(&pem)?))?;
    let without = client(None)?;
    let url = server.url("/v1/oauth/token");

    // The first exchange over mTLS must be certificate-bound, or the figure measures
    // something else.
    let first: serde_json::Value = with_svid
        .post(&url)
        .form(form)
        .send()
        .await?
        .error_for_status()
        .context("the first token exchange over mTLS failed; see the server log")?
        .json()
        .await?;
    let token = first["access_token"]
        .as_str()
        .context("the token exchange over mTLS answered no access_token")?;
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    if claims["cnf"]["x5t#S256"].as_str().is_none() {
        bail!("a token exchanged over mTLS carries no cnf.x5t#S256: {claims}");
    }

    let posts = |http: reqwest::Client| -> MakeRequest {
        let (url, form) = (url.clone(), form.to_vec());
        Arc::new(move || http.post(&url).form(&form))
    };
    eprintln!("token grants over TLS, no client certificate...");
    let plain = load::drive(
        plan.clients,
        plan.warmup,
        plan.http,
        Some(server.pid()),
        posts(without),
    )
    .await;
    eprintln!("token grants over mTLS (an X.509-SVID each client)...");
    let mtls = load::drive(
        plan.clients,
        plan.warmup,
        plan.http,
        Some(server.pid()),
        posts(with_svid),
    )
    .await;
    Ok((plain, mtls))
}
