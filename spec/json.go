package spec

import "encoding/json"

// stopWire is Stop without omitempty on grace. The tag in types.go omits a
// zero grace, but Parse reads an absent grace as the 10s default, so an
// explicit "grace: 0s" would not survive a trip through JSON and back.
type stopWire struct {
	Signal string   `json:"signal,omitempty" yaml:"signal,omitempty"`
	Grace  Duration `json:"grace" yaml:"grace"`
}

// MarshalJSON always writes grace, so that 0s round-trips through Parse.
func (s Stop) MarshalJSON() ([]byte, error) { return json.Marshal(stopWire(s)) }

// MarshalYAML always writes grace, so that 0s round-trips through Parse.
func (s Stop) MarshalYAML() (any, error) { return stopWire(s), nil }
