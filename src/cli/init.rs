//! `platform init NAME [--template sdk|wagi|json-api]`: writes a ready Go project.
//!
//! The project holds `main.go`, `go.mod`, `platform.toml`, `.gitignore` and a short
//! `README.md`. Nothing is overwritten: when any of those files exists, nothing is written.
//!
//! The Go SDK is not published, so SDK templates get a `replace` directive pointing at a
//! checkout's `sdk/go`: `--sdk`/`PLATFORM_SDK_DIR` when given, else the checkout this
//! binary was built from when it is still there. Without either, `go.mod` carries the
//! directive commented out and the command says what to fill in.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::manifest::check_app_name;

/// The SDK's Go module path.
pub const SDK_MODULE: &str = "github.com/platform-dev/platform/sdk/go";

/// What kind of project to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// A net/http handler on the Platform Go SDK (Go starts once per instance).
    Sdk,
    /// A plain net/http/cgi program (WAGI mode: no SDK, a fresh instance per request).
    Wagi,
    /// A small JSON API on the SDK.
    JsonApi,
}

impl Template {
    fn main_go(self) -> &'static str {
        match self {
            Template::Sdk => include_str!("templates/sdk/main.go.tmpl"),
            Template::Wagi => include_str!("templates/wagi/main.go.tmpl"),
            Template::JsonApi => include_str!("templates/json-api/main.go.tmpl"),
        }
    }

    /// True when the project imports the SDK (and builds as a WASI reactor).
    pub fn uses_sdk(self) -> bool {
        self != Template::Wagi
    }

    /// The `go build` command line that makes `app.wasm`.
    pub fn build_command(self) -> &'static str {
        if self.uses_sdk() {
            "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o app.wasm ."
        } else {
            "GOOS=wasip1 GOARCH=wasm go build -o app.wasm ."
        }
    }
}

/// `platform init` flags.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// App name (also the directory created, and the route `/NAME`).
    pub name: String,
    /// Project template.
    #[arg(long, value_enum, default_value = "sdk")]
    pub template: Template,
    /// Directory to write into [default: ./NAME].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A checkout's `sdk/go` directory, for go.mod's `replace` [default: the checkout this
    /// binary was built from, when present].
    #[arg(long, env = "PLATFORM_SDK_DIR")]
    pub sdk: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `init` wrote.
#[derive(Debug, Serialize)]
pub struct Created {
    /// App name.
    pub name: String,
    /// Template used.
    pub template: Template,
    /// Project directory.
    pub dir: PathBuf,
    /// Files written, relative to `dir`.
    pub files: Vec<String>,
    /// The SDK directory go.mod's `replace` points at, when one was found.
    pub sdk: Option<PathBuf>,
    /// Commands to build and run the project.
    pub next: Vec<String>,
}

/// Runs `platform init`.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let created = create(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(());
    }
    println!(
        "Created {} ({} template) in {}:",
        created.name,
        match created.template {
            Template::Sdk => "sdk",
            Template::Wagi => "wagi",
            Template::JsonApi => "json-api",
        },
        created.dir.display()
    );
    for f in &created.files {
        println!("  {f}");
    }
    if created.template.uses_sdk() && created.sdk.is_none() {
        println!(
            "\nThe Go SDK is not published yet and no checkout of it was found: edit the\n`replace` line in go.mod to point at platform/sdk/go, or run again with --sdk DIR."
        );
    }
    println!("\nNext:");
    for n in &created.next {
        println!("  {n}");
    }
    Ok(())
}

/// Writes the project; refuses (writing nothing) when any file already exists.
pub fn create(args: &InitArgs) -> anyhow::Result<Created> {
    check_app_name(&args.name).map_err(|m| anyhow::anyhow!("app name {:?}: {m}", args.name))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = if args.template.uses_sdk() {
        find_sdk(args.sdk.as_deref())?
    } else {
        None
    };
    let files = render(&args.name, args.template, sdk.as_deref());
    let existing: Vec<String> = files
        .iter()
        .filter(|(f, _)| dir.join(f).exists())
        .map(|(f, _)| dir.join(f).display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "not overwriting what is there: {} (choose another name or --dir)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (f, text) in &files {
        let path = dir.join(f);
        // create_new: a file that appeared since the check is still not overwritten.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut out, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let cd = format!("cd {}", dir.display());
    Ok(Created {
        name: args.name.clone(),
        template: args.template,
        dir,
        files: files.iter().map(|(f, _)| f.to_string()).collect(),
        sdk,
        next: vec![
            cd,
            args.template.build_command().to_string(),
            "platform up --manifest platform.toml".into(),
            format!("curl http://127.0.0.1:8080/{}/", args.name),
        ],
    })
}

/// The SDK directory to point `replace` at: the one given (which must hold the SDK), else
/// the build's own checkout when it is still there.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let is_sdk = |d: &Path| {
        std::fs::read_to_string(d.join("go.mod"))
            .is_ok_and(|m| m.lines().next() == Some(&format!("module {SDK_MODULE}")))
    };
    if let Some(d) = given {
        if !is_sdk(d) {
            bail!(
                "{} is not the Platform Go SDK (no go.mod declaring {SDK_MODULE}); give the sdk/go directory of a checkout",
                d.display()
            );
        }
        return Ok(Some(d.canonicalize().unwrap_or_else(|_| d.to_path_buf())));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/go");
    Ok(is_sdk(&built_from).then(|| built_from.canonicalize().unwrap_or(built_from)))
}

/// The project's files and their contents.
fn render(name: &str, template: Template, sdk: Option<&Path>) -> Vec<(&'static str, String)> {
    let main_go = template.main_go().replace("{{name}}", name);
    let mut go_mod = format!("module example.com/{name}\n\ngo 1.24\n");
    if template.uses_sdk() {
        go_mod.push_str(&format!("\nrequire {SDK_MODULE} v0.0.0\n\n"));
        go_mod.push_str("// The SDK is not published yet: build against a checkout of Platform.\n");
        match sdk {
            Some(d) => go_mod.push_str(&format!("replace {SDK_MODULE} => {}\n", d.display())),
            None => go_mod.push_str(&format!(
                "// Point this at your checkout and uncomment it:\n// replace {SDK_MODULE} => /path/to/platform/sdk/go\n"
            )),
        }
    }
    let manifest = format!(
        "# The app manifest: `platform up --manifest platform.toml` serves it locally,\n\
         # `platform deploy --manifest platform.toml` deploys it (keys: Platform's README,\n\
         # \"Manifest reference\").\n\
         [[apps]]\n\
         name = \"{name}\"\n\
         module = \"app.wasm\"        # built by: {build}\n\
         routes = [\"/{name}\"]\n\
         env = {{ GREETING = \"hello\" }}\n\
         limits = {{ memory = \"128MiB\", timeout = \"10s\" }}\n",
        build = template.build_command()
    );
    let gitignore = "# Built module\n*.wasm\n# Data of a local `platform up`\n.platform/\n";
    let mode = if template.uses_sdk() {
        "It uses the Platform Go SDK: Go starts once per instance, and `main` only registers\nthe handler (see the SDK's README)."
    } else {
        "It is a plain `net/http/cgi` program (WAGI mode): each request runs a fresh instance,\nand nothing in it depends on Platform."
    };
    let readme = format!(
        "# {name}\n\n\
         A Go HTTP app for Platform, compiled to WebAssembly. {mode}\n\n\
         ## Build\n\n```sh\n{build}\n```\n\n\
         ## Run locally\n\n```sh\nplatform up --manifest platform.toml\ncurl http://127.0.0.1:8080/{name}/\n```\n\n\
         ## Deploy\n\n```sh\nplatform login --server https://platform.example.com --token $TOKEN   # once\n\
         platform deploy --manifest platform.toml\nplatform logs {name} -f\n```\n\n\
         Secrets reach the app as environment variables: `platform secrets set {name} API_KEY`\n\
         (the value is read from stdin).\n",
        build = template.build_command()
    );
    vec![
        ("main.go", main_go),
        ("go.mod", go_mod),
        ("platform.toml", manifest),
        (".gitignore", gitignore.to_string()),
        ("README.md", readme),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn args(name: &str, template: Template, dir: &Path) -> InitArgs {
        InitArgs {
            name: name.into(),
            template,
            dir: Some(dir.to_path_buf()),
            sdk: None,
            json: false,
        }
    }

    #[test]
    fn writes_the_project_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shop");
        let made = create(&args("shop", Template::Sdk, &dir)).unwrap();
        assert_eq!(made.files.len(), 5);
        let main = std::fs::read_to_string(dir.join("main.go")).unwrap();
        assert!(main.contains("const prefix = \"/shop\""), "{main}");
        let go_mod = std::fs::read_to_string(dir.join("go.mod")).unwrap();
        assert!(go_mod.contains(&format!("require {SDK_MODULE} v0.0.0")));
        // Built from a checkout, the replace points at its SDK.
        assert!(
            go_mod.contains(&format!("replace {SDK_MODULE} => /")),
            "{go_mod}"
        );
        let before = std::fs::read_to_string(dir.join("README.md")).unwrap();
        std::fs::write(dir.join("main.go"), "mine").unwrap();
        let e = create(&args("shop", Template::Wagi, &dir)).unwrap_err();
        assert!(e.to_string().contains("not overwriting"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("main.go")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("README.md")).unwrap(),
            before
        );
    }

    #[test]
    fn wagi_needs_no_sdk_and_bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        create(&args("plain", Template::Wagi, tmp.path())).unwrap();
        let go_mod = std::fs::read_to_string(tmp.path().join("go.mod")).unwrap();
        assert!(!go_mod.contains("require"), "{go_mod}");
        assert!(create(&args("Bad Name", Template::Sdk, &tmp.path().join("x"))).is_err());
        let mut a = args("x", Template::Sdk, &tmp.path().join("x"));
        a.sdk = Some(tmp.path().to_path_buf());
        assert!(
            create(&a)
                .unwrap_err()
                .to_string()
                .contains("not the Platform Go SDK")
        );
    }
}
