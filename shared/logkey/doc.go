// Package logkey is the vocabulary of log/slog attribute keys shared by
// every Pleiades daemon, so that logs of different daemons can be searched
// with the same keys. Keys are lower_snake. Use them with slog.With or
// typed attrs on hot paths:
//
//	log := base.With(logkey.Component, logkey.CompTransport)
//	log.LogAttrs(ctx, slog.LevelDebug, "sent", slog.String(logkey.Peer, addr))
//
// The package also builds the root logger of a binary (New); libraries never
// build loggers, they receive one.
package logkey
