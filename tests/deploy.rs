//! The Kubernetes example (`deploy/kubernetes`), checked offline: every
//! manifest against the Kubernetes API schemas (kubernetes-validate, which
//! ships them in its wheel; strict, so unknown fields are errors), broken
//! copies refused so the check cannot pass vacuously, and the proxy
//! container's settings cross-checked against what Massa reads, so the
//! example cannot drift from the binary. `tests/run` installs the checker
//! into a venv and sets `MASSA_K8S_VALIDATE` to it.

mod support;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// The oldest Kubernetes the example supports (its preStop `sleep` action)
/// and the newest the pinned checker knows.
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// Not an API object: kustomize's own file, checked against the others.
const KUSTOMIZATION: &str = "kustomization.yaml";

/// The venv holding `kubernetes-validate` (and PyYAML, its dependency).
fn venv() -> PathBuf {
    let how = "run tests/run, which installs kubernetes-validate into a venv and sets it to the venv's directory";
    let dir = PathBuf::from(support::require_env("MASSA_K8S_VALIDATE", how));
    assert!(
        dir.join("bin/kubernetes-validate").is_file(),
        "MASSA_K8S_VALIDATE={} has no bin/kubernetes-validate: {how}",
        dir.display()
    );
    dir
}

/// Every file of the example but the kustomization; all must be YAML.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(DIR).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        assert_eq!(
            f.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{} in {DIR} is not a .yaml manifest",
            f.display()
        );
    }
    files.retain(|f| !f.ends_with(KUSTOMIZATION));
    assert!(!files.is_empty(), "no manifests in {DIR}");
    files
}

/// Runs the checker on `files`. Success needs more than its exit status:
/// a kind it has no schema for is only a warning there, so every line must
/// be a pass and each file must have passed against each version.
fn validate(venv: &Path, files: &[PathBuf]) -> Result<(), String> {
    let mut cmd = Command::new(venv.join("bin/kubernetes-validate"));
    cmd.arg("--strict");
    for v in VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.args(files).output().expect("running kubernetes-validate");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let refused = lines.iter().any(|l| !(l.starts_with("INFO ") && l.contains(" passed for resource ")));
    let unchecked = files.iter().find(|f| {
        VERSIONS.iter().any(|v| {
            let minor = v.rsplit_once('.').unwrap().0;
            let prefix = format!("INFO {} passed ", f.display());
            !lines.iter().any(|l| l.starts_with(&prefix) && l.ends_with(&format!("against version {minor}")))
        })
    });
    match (out.status.success() && !refused, unchecked) {
        (true, None) => Ok(()),
        (true, Some(f)) => Err(format!("{} was not checked against every version:\n{text}", f.display())),
        (false, _) => Err(text),
    }
}

/// The YAML documents of `file`, as JSON (parsed by the venv's PyYAML).
fn documents(venv: &Path, file: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("running the venv's python");
    assert!(out.status.success(), "parsing {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// The one API object of `name` (one per file keeps the checker's report
/// per file exact).
fn object(venv: &Path, name: &str) -> Value {
    let mut docs = documents(venv, &Path::new(DIR).join(name));
    assert_eq!(docs.len(), 1, "{name} must hold exactly one object");
    docs.remove(0)
}

#[test]
fn every_manifest_passes_the_kubernetes_api_schemas() {
    let venv = venv();
    if let Err(report) = validate(&venv, &manifests()) {
        panic!("deploy/kubernetes does not validate:\n{report}");
    }
}

#[test]
fn broken_copies_are_refused() {
    let venv = venv();
    let dir = std::env::temp_dir().join(format!("massa-deploy-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    // (file, text in it, replacement, what the refusal must name)
    let breaks = [
        ("deployment.yaml", "replicas: 3", "replicas: \"three\"", "spec.replicas"),
        ("deployment.yaml", "periodSeconds: 5", "periodSecond: 5", "'periodSecond' was unexpected"),
        ("pdb.yaml", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgett", "Couldn't find schema"),
    ];
    for (i, (file, from, to, expect)) in breaks.iter().enumerate() {
        let text = fs::read_to_string(Path::new(DIR).join(file)).unwrap();
        assert!(text.contains(from), "{file} no longer contains `{from}`: update this test's broken copies");
        let broken = dir.join(format!("{i}-{file}"));
        fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        match validate(&venv, &[broken]) {
            Ok(()) => panic!("{file} with `{from}` made `{to}` was accepted"),
            Err(report) => {
                assert!(report.contains(expect), "{file} with `{to}`: refused, but not for `{expect}`:\n{report}")
            }
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let venv = venv();
    let kustomization = object(&venv, KUSTOMIZATION);
    let listed: BTreeSet<&str> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let files = manifests();
    let present: BTreeSet<&str> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(listed, present, "kustomization.yaml's resources must be exactly the manifests beside it");
}

/// Every `.rs` file under `dir`, as text.
fn sources(dir: &Path) -> Vec<String> {
    let mut texts = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            texts.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            texts.push(fs::read_to_string(&path).unwrap());
        }
    }
    texts
}

/// The proxy container of the Deployment.
fn proxy(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    containers.iter().find(|c| c["name"] == "massa").expect("a container named massa")
}

/// Its env var `name`'s literal value.
fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    let vars = container["env"].as_array().unwrap();
    let var =
        vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("the massa container does not set {name}"));
    var["value"].as_str().unwrap_or_else(|| panic!("{name} has no literal value"))
}

#[test]
fn the_proxy_reads_every_variable_the_example_sets() {
    let venv = venv();
    let deployment = object(&venv, "deployment.yaml");
    let config = fs::read_to_string(Path::new(SRC).join("config.rs")).unwrap();
    let sources = sources(Path::new(SRC));
    let unread: Vec<&str> = proxy(&deployment)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        // A flag's env (clap), or one the code reads itself (POD_IP).
        .filter(|name| {
            !config.contains(&format!("env = \"{name}\""))
                && !sources.iter().any(|s| s.contains(&format!("var(\"{name}\")")))
        })
        .collect();
    assert!(unread.is_empty(), "deploy/kubernetes sets variables Massa does not read (src/config.rs): {unread:?}");
}

#[test]
fn ports_seeds_probes_and_secret_agree() {
    let venv = venv();
    let deployment = object(&venv, "deployment.yaml");
    let massa = proxy(&deployment);
    let port = |name: &str| {
        let ports = massa["ports"].as_array().unwrap();
        let p = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no container port {name}"));
        (p["containerPort"].as_u64().unwrap().to_string(), p["protocol"].as_str().unwrap().to_owned())
    };
    for (var, name, protocol) in
        [("HTTP_PORT", "grpc", "TCP"), ("METRICS_PORT", "admin", "TCP"), ("MASSA_CLUSTER_PORT", "gossip", "UDP")]
    {
        assert_eq!(port(name), (env(massa, var).to_owned(), protocol.to_owned()), "container port {name} vs {var}");
    }

    // Seeds: the headless Service (listing not-ready pods) on the gossip port.
    let gossip = object(&venv, "gossip-service.yaml");
    let seeds = env(massa, "MASSA_CLUSTER_SEEDS");
    let expected = format!("{}:{}", gossip["metadata"]["name"].as_str().unwrap(), env(massa, "MASSA_CLUSTER_PORT"));
    assert_eq!(seeds, expected, "MASSA_CLUSTER_SEEDS must name the headless Service on the gossip port");
    assert_eq!(gossip["spec"]["clusterIP"], "None", "the seeds Service must be headless (pod IPs, not a virtual IP)");
    assert_eq!(
        gossip["spec"]["publishNotReadyAddresses"], true,
        "starting replicas must find each other before any is ready"
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for service in [&gossip, &object(&venv, "service.yaml")] {
        for (k, v) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{} selects label {k} the pods do not carry", service["metadata"]["name"]);
        }
    }

    // Probes: the admin endpoints Massa serves (src/admin/mod.rs).
    let admin = fs::read_to_string(Path::new(SRC).join("admin/mod.rs")).unwrap();
    for (probe, path) in [("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")] {
        let get = &massa[probe]["httpGet"];
        assert_eq!((get["path"].as_str(), get["port"].as_str()), (Some(path), Some("admin")), "{probe}");
        assert!(admin.contains(&format!("(\"GET\", \"{path}\")")), "the admin port does not serve {path}");
    }

    // The database URL comes from the Secret template's key.
    let secret = object(&venv, "secret.yaml");
    let vars = massa["env"].as_array().unwrap();
    let url = vars.iter().find(|v| v["name"] == "MASSA_POSTGRES_URL").expect("MASSA_POSTGRES_URL");
    let key_ref = &url["valueFrom"]["secretKeyRef"];
    assert_eq!(key_ref["name"], secret["metadata"]["name"]);
    let key = key_ref["key"].as_str().unwrap();
    assert!(secret["stringData"][key].is_string(), "secret.yaml has no key {key}");
}
