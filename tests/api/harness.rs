//! The test runner: every test registers itself here, and `main` runs them with
//! libtest-mimic, which speaks the built-in harness's command line and output.
//!
//! Why not `#[tokio::test]`: whether PostgreSQL is reachable is known only at run time, and
//! the built-in harness can only pass or fail a test then. Here the PostgreSQL half of a
//! test is reported as *ignored* when PostgreSQL is unreachable, so a run without it never
//! shows those halves as passed; with `COUNTERSIGN_REQUIRE_POSTGRES=1` (CI) they fail instead.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::helpers::{Backend, postgres_probe};

pub type Body = Pin<Box<dyn Future<Output = ()>>>;

/// One registered test. `run` receives the database it should use.
pub struct Case {
    pub path: &'static str,
    pub name: &'static str,
    pub on: On,
    pub run: fn(Backend) -> Body,
}

/// Which databases a test runs on.
pub enum On {
    /// Twice: `…::on_sqlite` and `…::on_postgres`.
    Both,
    /// Once, needing PostgreSQL (several replicas share one database only there).
    PostgresOnly,
    /// Once, needing no database of the harness's (it runs on SQLite if it asks).
    Neither,
}

inventory::collect!(Case);

/// Registers tests that run on both databases: `backend_tests!(name, other);` beside
/// `async fn name(backend: Backend) { … }`. The tests are plain functions, so rustfmt
/// formats them; one written and not registered is dead code, which clippy refuses.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $($crate::register!($name, $crate::harness::On::Both, |backend| $name(backend));)+
    };
}

/// Registers tests that need PostgreSQL alone: `postgres_tests!(name);` beside
/// `async fn name() { … }`.
#[macro_export]
macro_rules! postgres_tests {
    ($($name:ident),+ $(,)?) => {
        $($crate::register!($name, $crate::harness::On::PostgresOnly, |_| $name());)+
    };
}

/// Registers tests that use no test database: `plain_tests!(name);` beside
/// `async fn name() { … }`.
#[macro_export]
macro_rules! plain_tests {
    ($($name:ident),+ $(,)?) => {
        $($crate::register!($name, $crate::harness::On::Neither, |_| $name());)+
    };
}

#[macro_export]
macro_rules! register {
    ($name:ident, $on:expr, |$backend:pat_param| $call:expr) => {
        inventory::submit! {
            $crate::harness::Case {
                path: module_path!(),
                name: stringify!($name),
                on: $on,
                run: |$backend| -> $crate::harness::Body { Box::pin($call) },
            }
        }
    };
}

/// Runs every registered test that the command line selects.
pub fn main() -> ExitCode {
    let args = Arguments::from_args();
    let postgres = postgres_probe();
    if let Err(why) = &postgres {
        eprintln!("PostgreSQL halves: {why}");
    }
    let mut trials = Vec::new();
    for case in inventory::iter::<Case> {
        let base = match case.path.split_once("::") {
            Some((_, module)) => format!("{module}::{}", case.name),
            None => case.name.to_owned(),
        };
        match case.on {
            On::Both => {
                trials.push(trial(format!("{base}::on_sqlite"), case, Backend::Sqlite));
                trials.push(postgres_trial(
                    format!("{base}::on_postgres"),
                    case,
                    &postgres,
                ));
            }
            On::PostgresOnly => trials.push(postgres_trial(base, case, &postgres)),
            On::Neither => trials.push(trial(base, case, Backend::Sqlite)),
        }
    }
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial(name: String, case: &'static Case, backend: Backend) -> Trial {
    let run = case.run;
    Trial::test(name, move || {
        // The shape `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` had.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|err| Failed::from(format!("starting a runtime: {err}")))?;
        runtime.block_on(run(backend));
        Ok(())
    })
}

/// Ignored when PostgreSQL is unreachable, failed when it is also required.
fn postgres_trial(
    name: String,
    case: &'static Case,
    postgres: &Result<(), crate::helpers::Unreachable>,
) -> Trial {
    match postgres {
        Ok(()) => trial(name, case, Backend::Postgres),
        Err(why) if why.required => {
            let message = why.to_string();
            Trial::test(name, move || Err(Failed::from(message)))
        }
        Err(_) => trial(name, case, Backend::Postgres).with_ignored_flag(true),
    }
}

plain_tests!(every_test_goes_through_the_harness);

/// Under `harness = false` a `#[test]` function compiles and never runs; refuse them.
async fn every_test_goes_through_the_harness() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api");
    let mut strays = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
                strays.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert!(
        strays.is_empty(),
        "use backend_tests!/postgres_tests!/plain_tests!: {strays:?}"
    );
}
