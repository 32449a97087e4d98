//! Tells the tests which of their optional environments are there.
//!
//! A few integration tests need what a development machine may lack: a
//! browser (Chromium and ChromeDriver), a PostgreSQL server, a real
//! Postfix and Dovecot (tests/e2e/setup.sh), root to mount a small
//! filesystem and fill it, pdftotext and a Chinese font. Each is compiled as
//! `#[ignore = "needs ..."]` unless the variable that says its environment
//! is there was set when the tests were built, so that `cargo test` lists
//! them as ignored, with the reason, instead of passing them without a
//! word. `.ci/run` sets them all; a changed variable rebuilds the tests.
//! The pass on PostgreSQL (`MAILTRAIL_TEST_BACKEND=postgres`) likewise
//! lists the tests that only apply to SQLite as ignored.

/// Whether a variable's value says the environment is there.
type On = fn(&str) -> bool;

/// (variable, cfg it sets, whether a value turns it on).
const SWITCHES: &[(&str, &str, On)] = &[
    ("MAILTRAIL_BROWSER_TESTS", "mailtrail_browser", |v| {
        !v.is_empty()
    }),
    ("MAILTRAIL_TEST_POSTGRES", "mailtrail_postgres", |v| {
        !v.is_empty()
    }),
    ("MAILTRAIL_E2E", "mailtrail_e2e", |v| v == "1"),
    // pdftotext (poppler-utils) and a font with Chinese (fonts-wqy-zenhei),
    // to read the reports' PDFs back (tests/it/pdf.rs).
    ("MAILTRAIL_PDF_TESTS", "mailtrail_pdf", |v| v == "1"),
    // Root, to mount a small tmpfs and fill it (tests/it/faults.rs).
    ("MAILTRAIL_FAULT_TESTS", "mailtrail_faults", |v| v == "1"),
    // The integration tests' pass on PostgreSQL, where the few tests that
    // hold a SQLite file in their hands do not apply.
    ("MAILTRAIL_TEST_BACKEND", "mailtrail_on_postgres", |v| {
        v == "postgres"
    }),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for (var, cfg, on) in SWITCHES {
        println!("cargo:rerun-if-env-changed={var}");
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        if std::env::var(var).is_ok_and(|v| on(&v)) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
