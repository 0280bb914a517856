package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/allegro-mesh/allegro/bulletin"
	"github.com/allegro-mesh/allegro/qc"
)

// sseWriteTimeout bounds one write to an event-stream client; a client that
// stops reading is disconnected instead of pinning the handler.
const sseWriteTimeout = 10 * time.Second

// handleEvents streams board events as server-sent events:
//
//	event: <certificate|qc|lifecycle|equivocation|settlement_failure>
//	id: <sequence>
//	data: <JSONEvent>
//
// Filters: ?tx=<hash> and ?address=<addr> (sender or recipient). A comment
// line is sent every HeartbeatInterval; a lagging client gets
// "event: dropped" with the number of events it lost; the stream ends with
// "event: end" when it reaches StreamTimeout or the server stops.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	var txFilter *qc.Hash
	var addrFilter *qc.Address
	v := r.URL.Query()
	if tx := v.Get("tx"); tx != "" {
		h, err := ParseTxHash(tx)
		if err != nil {
			badRequest(w, "tx: "+err.Error())
			return
		}
		txFilter = &h
	}
	if a := v.Get("address"); a != "" {
		addr, err := ParseAddress(a)
		if err != nil {
			badRequest(w, "address: "+err.Error())
			return
		}
		addrFilter = &addr
	}
	filter := func(ev *bulletin.Event) bool {
		if txFilter != nil && ev.TxHash != *txFilter {
			return false
		}
		if addrFilter != nil && ev.Sender != *addrFilter && ev.Recipient != *addrFilter {
			return false
		}
		return true
	}

	sub := s.backend.Board().Subscribe(filter)
	defer sub.Close()
	s.metrics.streams.WithLabelValues("sse").Inc()
	defer s.metrics.streams.WithLabelValues("sse").Dec()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		buf.Reset()
		return rc.Flush() == nil
	}
	writeEvent := func(kind, id string, data any) {
		b, err := json.Marshal(data)
		if err != nil {
			b = []byte(`{}`)
		}
		buf.WriteString("event: " + kind + "\n")
		if id != "" {
			buf.WriteString("id: " + id + "\n")
		}
		buf.WriteString("data: ")
		buf.Write(b)
		buf.WriteString("\n\n")
	}

	// The opening comment tells the client the subscription is in place.
	buf.WriteString("retry: 3000\n: subscribed " + strconv.FormatInt(time.Now().UnixMilli(), 10) + "\n\n")
	if !flush() {
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StreamTimeout)
	defer cancel()
	heartbeat := time.NewTicker(s.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	var counter, dropped uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ctx.Done():
			writeEvent("end", "", map[string]string{"reason": "stream lifetime cap of " + s.cfg.StreamTimeout.String() + " reached; reconnect"})
			flush()
			return
		case <-s.closing:
			writeEvent("end", "", map[string]string{"reason": "server is shutting down"})
			flush()
			return
		case ev, ok := <-sub.C():
			if !ok {
				return
			}
			counter++
			id := counter
			if ev.Seq != 0 {
				id = ev.Seq
			}
			writeEvent(ev.Kind.String(), strconv.FormatUint(id, 10), NewJSONEvent(&ev))
		case <-heartbeat.C:
			buf.WriteString(": heartbeat " + strconv.FormatInt(time.Now().UnixMilli(), 10) + "\n\n")
		}
		if d := sub.Dropped(); d != dropped {
			s.metrics.streamDrops.WithLabelValues("sse").Add(float64(d - dropped))
			writeEvent("dropped", "", map[string]uint64{"dropped": d - dropped, "total_dropped": d})
			dropped = d
		}
		if !flush() {
			return
		}
	}
}
