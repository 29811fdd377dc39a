// Package config turns command-line flags, PLEIADES_* environment variables
// and an optional YAML or TOML file into validated daemon configuration.
//
// Every Pleiades binary declares plain urfave/cli flags; [NewApp] (or
// [Prepare] for an app with sub-commands) then gives each flag an
// environment variable PLEIADES_<FLAG_UPPER_SNAKE> (unless it already has
// one) and a key in the file named by --config (keys are flag names, e.g.
// "data-dir: /var/lib/pleiades"). Precedence is flag > env > file > default.
// --help lists each flag's default and environment variable.
//
// [CommonFlags] declares the flags every daemon shares and [CommonFrom]
// reads and validates them into a [Common]. Every error returned by the app
// or by CommonFrom names the offending flag; the caller (daemon.Main) prints
// it on stderr and exits with status 2.
//
// The package reads flags, the environment and files only when a binary's
// main runs an app it built; libraries receive Common (or their own Config)
// by value and never look at flags or the environment themselves.
package config
