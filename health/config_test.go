package health

import (
	"errors"
	"testing"
	"time"
)

func TestValidateRejectsConfigsThatCannotWork(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"zero interval", func(c *Config) { c.ProbeInterval = 0 }},
		{"zero timeout", func(c *Config) { c.ProbeTimeout = 0 }},
		{"timeout not shorter than interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }},
		{"zero threshold", func(c *Config) { c.FailureThreshold = 0 }},
		{"negative window", func(c *Config) { c.FlapWindow = -time.Second }},
		{"max below base", func(c *Config) { c.HoldDownMax = c.HoldDownBase - 1 }},
		{"negative max failed", func(c *Config) { c.MaxFailed = -1 }},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.change(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", tt.name, err)
		}
	}
	damping := DefaultConfig()
	damping.FlapWindow, damping.HoldDownBase, damping.HoldDownMax = 0, 0, 0
	if err := damping.Validate(); err != nil {
		t.Fatalf("damping off should be valid: %v", err)
	}
}
