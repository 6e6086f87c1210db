//! `leadlink check-config`: every problem in a configuration, or that it is valid.

use crate::config::Config;
use std::path::Path;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    match Config::load(config_path) {
        Ok(_) => {
            println!("configuration is valid");
            Ok(())
        }
        Err(e) => {
            // The problems are the whole answer: no "Error:" prefix, just exit 1.
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
