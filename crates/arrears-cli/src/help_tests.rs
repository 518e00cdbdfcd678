//! Every argument says what it is for and every command shows an example: the help
//! screens are the manual a new user reads first.

use clap::CommandFactory;

use crate::Cli;

fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
    let path = if path.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{path} {}", cmd.get_name())
    };
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
            problems.push(format!("`{path}`: argument `{id}` has no help text"));
        }
    }
    // Commands that only group others list them; the root and every command that
    // runs shows how.
    if cmd.get_after_help().is_none() && (path == "arrears" || !cmd.has_subcommands()) {
        problems.push(format!("`{path}`: no example (after_help)"));
    }
    for s in cmd.get_subcommands() {
        walk(s, &path, problems);
    }
}

#[test]
fn every_argument_has_help_and_every_command_an_example() {
    let mut problems = Vec::new();
    walk(&Cli::command(), "", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}
