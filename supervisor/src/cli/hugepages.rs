//! `supervisor hugepages`: DPDK's preparation on its own, for running an
//! engine by hand. What `reserve` takes is recorded so that `release` gives
//! back exactly that, like a run's teardown does.

use std::path::PathBuf;

use serde::Serialize;
use testbed::host::hugepages::{self, HugepageError, HugepageGrant, PoolState};

/// `supervisor hugepages`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HugepagesAction {
    /// Show the 2 MB pool and the hugetlbfs mount.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Make sure N free 2 MB pages and a hugetlbfs mount exist.
    Reserve {
        /// Free pages wanted.
        #[arg(long, default_value_t = 256)]
        pages: u64,
        /// Where to mount hugetlbfs if nothing is mounted.
        #[arg(long, default_value = "/run/bypasslab/hugepages")]
        mount: PathBuf,
    },
    /// Give back what `reserve` took.
    Release,
}

#[derive(Debug, Serialize)]
struct Status {
    pool: Option<PoolState>,
    mount: Option<PathBuf>,
    reserved_by_bypasslab: Option<HugepageGrant>,
}

/// Runs the subcommand; returns the exit code.
///
/// # Errors
/// Reservation or mount failures; a second `reserve` without `release`.
pub fn run(action: &HugepagesAction) -> Result<i32, HugepageError> {
    match action {
        HugepagesAction::Status { json } => {
            let status = Status {
                pool: hugepages::pool(),
                mount: hugepages::find_mount(),
                reserved_by_bypasslab: hugepages::reservation(),
            };
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                match status.pool {
                    Some(p) => println!("2 MB hugepages: {} total, {} free", p.total, p.free),
                    None => println!("2 MB hugepages: this kernel has no 2 MB pool"),
                }
                match &status.mount {
                    Some(m) => println!("hugetlbfs mounted at {}", m.display()),
                    None => println!("hugetlbfs: not mounted"),
                }
                if let Some(g) = &status.reserved_by_bypasslab {
                    println!(
                        "reserved by `supervisor hugepages reserve`: {} pages added{}",
                        g.added_pages,
                        g.mounted_at
                            .as_ref()
                            .map(|m| format!(", mounted {}", m.display()))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        HugepagesAction::Reserve { pages, mount } => {
            let grant = hugepages::reserve(*pages, mount)?;
            match &grant.unavailable {
                Some(why) => eprintln!("supervisor: hugepages not available: {why}"),
                None => eprintln!(
                    "supervisor: {pages} free 2 MB pages ready ({} added), hugetlbfs at {}",
                    grant.added_pages,
                    grant
                        .dir
                        .as_ref()
                        .map_or_else(String::new, |d| d.display().to_string())
                ),
            }
            Ok(0)
        }
        HugepagesAction::Release => {
            let Some((grant, problems)) = hugepages::release_reservation() else {
                eprintln!("supervisor: nothing to release: no reservation recorded");
                return Ok(0);
            };
            for p in &problems {
                eprintln!("supervisor: {p}");
            }
            eprintln!("supervisor: released {} pages", grant.added_pages);
            Ok(i32::from(!problems.is_empty()))
        }
    }
}
