// Package promreg is how every component registers its Prometheus metrics:
// all of a component's collectors or none, with an error instead of a
// panic, so a failed constructor leaves the registry as it found it and can
// be retried.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Set is the collectors a component registered.
type Set struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers cs with reg (nil: nothing is registered). After a
// failure it unregisters the ones it registered and returns an error naming
// component; one already registered is an AlreadyRegisteredError, which a
// caller running two components on one registry reads as "give each its
// own" (prometheus.WrapRegistererWith).
func Register(component string, reg prometheus.Registerer, cs ...prometheus.Collector) (*Set, error) {
	s := &Set{reg: reg}
	if reg == nil {
		return s, nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			s.Unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("%s: metrics already registered on this registry (give each %s its own): %w", component, component, err)
			}
			return nil, fmt.Errorf("%s: register metrics: %w", component, err)
		}
		s.cs = append(s.cs, c)
	}
	return s, nil
}

// Unregister removes the set's collectors from their registry.
func (s *Set) Unregister() {
	if s == nil || s.reg == nil {
		return
	}
	for _, c := range s.cs {
		s.reg.Unregister(c)
	}
	s.cs = nil
}
