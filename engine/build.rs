//! Links F-Stack when the `fstack` feature is on; does nothing otherwise.
//!
//! F-Stack is in no package registry and is never vendored: the user
//! installs it (F-Stack's own `lib/` Makefile, `make install`) and points
//! `FF_PATH` at it. Accepted layouts:
//!
//! - an install prefix: `FF_PATH/lib/libfstack.a` (F-Stack's `make install`
//!   makes it a link to `libfstack.a.<version>`) and `FF_PATH/include/ff_api.h`;
//! - F-Stack's own source tree after `make` in `lib/`: `FF_PATH/lib/libfstack.a`,
//!   `FF_PATH/lib/ff_api.h` and `FF_PATH/VERSION`.
//!
//! Without `FF_PATH` the conventional prefixes `/usr/local` and `/usr` are
//! tried. The version must be one the engine's declarations were written
//! against, and DPDK (pkg-config `libdpdk`) the series that F-Stack release
//! targets; anything else fails the build with a message saying what to do.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// F-Stack releases whose `ff_api.h` / `ff_epoll.h` / `ff_config.h` the
/// engine's hand-written declarations match.
const SUPPORTED_FSTACK: &[&str] = &["1.24"];
/// The DPDK series F-Stack 1.24 is built against.
const SUPPORTED_DPDK: &str = "22.11";
/// Prefixes tried when `FF_PATH` is not set.
const CONVENTIONAL_PREFIXES: &[&str] = &["/usr/local", "/usr"];

const HOW_TO: &str = "run `scripts/fstack --source <F-Stack 1.24 source tree>` (or \
     `--clone`), which builds F-Stack 1.24 and the engine with it; or install F-Stack release \
     1.24 (it targets DPDK 22.11; later releases target DPDK 23.11) following F-Stack's \
     documentation (https://github.com/F-Stack/f-stack, doc/F-Stack_Build_Guide.md): build its \
     lib/ against the system DPDK and `make install` into a prefix (bypasslab's README, section \
     F-Stack, lists the steps), then build with `FF_PATH=<prefix> cargo build --release \
     --features engine/fstack`; or build without the `fstack` feature";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FF_PATH");
    if env::var_os("CARGO_FEATURE_FSTACK").is_none() {
        return;
    }
    let install = find_fstack().unwrap_or_else(|why| fail(&why));
    println!(
        "cargo:rerun-if-changed={}",
        install.lib_dir.join("libfstack.a").display()
    );
    if !SUPPORTED_FSTACK.contains(&install.version.as_str()) {
        fail(&format!(
            "F-Stack {} found in {}, but this engine supports F-Stack {} only",
            install.version,
            install.prefix.display(),
            SUPPORTED_FSTACK.join(", ")
        ));
    }

    // libfstack.a whole (its FreeBSD subsystems register themselves through
    // linker sets that nothing references by name), then what it needs:
    // the system's DPDK (shared), the bonding PMD it calls directly, and
    // libcrypto / libnuma / the C runtime.
    println!(
        "cargo:rustc-link-search=native={}",
        install.lib_dir.display()
    );
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=fstack");
    // FreeBSD's SYSINIT linker sets are found through __start_/__stop_
    // symbols only: section garbage collection must keep them (lld
    // otherwise drops the sets and the link fails on __start_set_sysinit_set).
    println!("cargo:rustc-link-arg=-Wl,-z,nostart-stop-gc");
    let dpdk = pkg_config::Config::new()
        .atleast_version(SUPPORTED_DPDK)
        .probe("libdpdk")
        .unwrap_or_else(|e| fail(&format!("libdpdk not found with pkg-config ({e})")));
    if !dpdk.version.starts_with(SUPPORTED_DPDK) {
        fail(&format!(
            "F-Stack {} needs DPDK {SUPPORTED_DPDK}, but pkg-config's libdpdk is {}",
            install.version, dpdk.version
        ));
    }
    for lib in ["rte_net_bond", "crypto", "numa", "rt", "m", "dl", "pthread"] {
        println!("cargo:rustc-link-lib={lib}");
    }
    println!(
        "cargo:rustc-env=BYPASSLAB_FSTACK_VERSION={}",
        install.version
    );
    println!(
        "cargo:rustc-env=BYPASSLAB_FSTACK_DPDK_VERSION={}",
        dpdk.version
    );
    println!(
        "cargo:rustc-env=BYPASSLAB_FSTACK_PREFIX={}",
        install.prefix.display()
    );
}

/// A usable F-Stack installation.
struct Install {
    prefix: PathBuf,
    lib_dir: PathBuf,
    version: String,
}

fn fail(why: &str) -> ! {
    panic!("\n\nthe `fstack` feature cannot be built: {why}.\nTo enable it: {HOW_TO}.\n\n");
}

fn find_fstack() -> Result<Install, String> {
    if let Some(path) = env::var_os("FF_PATH") {
        return inspect(Path::new(&path))
            .map_err(|why| format!("FF_PATH={}: {why}", path.to_string_lossy()));
    }
    let mut tried = Vec::new();
    for prefix in CONVENTIONAL_PREFIXES {
        match inspect(Path::new(prefix)) {
            Ok(install) => return Ok(install),
            Err(why) => tried.push(format!("{prefix}: {why}")),
        }
    }
    Err(format!(
        "FF_PATH is not set and no F-Stack install was found ({})",
        tried.join("; ")
    ))
}

fn inspect(prefix: &Path) -> Result<Install, String> {
    let lib_dir = prefix.join("lib");
    let archive = lib_dir.join("libfstack.a");
    if !archive.is_file() {
        return Err(format!("no {}", archive.display()));
    }
    let headers = [prefix.join("include"), lib_dir.clone()];
    if !headers.iter().any(|dir| dir.join("ff_api.h").is_file()) {
        return Err(format!(
            "{} exists but ff_api.h is in neither {} nor {}",
            archive.display(),
            headers[0].display(),
            headers[1].display()
        ));
    }
    let version = version_of(prefix, &archive).ok_or_else(|| {
        format!(
            "cannot tell the F-Stack version: {} is not a link to libfstack.a.<version> \
             (as F-Stack's `make install` makes it) and there is no {}",
            archive.display(),
            prefix.join("VERSION").display()
        )
    })?;
    Ok(Install {
        prefix: prefix.to_owned(),
        lib_dir,
        version,
    })
}

/// The release, from `make install`'s versioned archive name or from the
/// source tree's `VERSION` file.
fn version_of(prefix: &Path, archive: &Path) -> Option<String> {
    let from_link = fs::read_link(archive).ok().and_then(|target| {
        target
            .file_name()?
            .to_str()?
            .strip_prefix("libfstack.a.")
            .map(str::to_owned)
    });
    let from_sibling = || {
        fs::read_dir(archive.parent()?)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("libfstack.a.")
                    .map(str::to_owned)
            })
            .max()
    };
    let from_file = || {
        fs::read_to_string(prefix.join("VERSION"))
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    from_link.or_else(from_sibling).or_else(from_file)
}
