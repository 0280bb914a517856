package p2p

import (
	"context"
	"log/slog"

	"github.com/libp2p/go-libp2p/gologshim"
)

// LogLibp2pTo sends go-libp2p's own logs to logger's handler (same format
// as the sidecar's, attribute component=libp2p) at error level, the level
// libp2p logs at by default. The records of the fx application libp2p
// builds its host with are dropped: a failure they describe comes back as
// the error of New, and the sidecar reports it once. It is process-wide
// and takes effect for libp2p loggers that have not logged yet: call it
// once, early, from a process's main.
func LogLibp2pTo(logger *slog.Logger) {
	gologshim.SetDefaultHandler(libp2pHandler{h: logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "libp2p")})})
}

type libp2pHandler struct {
	h  slog.Handler
	fx bool // the logger's attributes say system=fx
}

func (l libp2pHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return !l.fx && level >= slog.LevelError && l.h.Enabled(ctx, level)
}

func (l libp2pHandler) Handle(ctx context.Context, r slog.Record) error {
	if l.fx {
		return nil
	}
	return l.h.Handle(ctx, r)
}

func (l libp2pHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fx := l.fx
	for _, a := range attrs {
		if a.Key == "system" && a.Value.String() == "fx" {
			fx = true
		}
	}
	return libp2pHandler{h: l.h.WithAttrs(attrs), fx: fx}
}

func (l libp2pHandler) WithGroup(name string) slog.Handler {
	return libp2pHandler{h: l.h.WithGroup(name), fx: l.fx}
}
