package hooks

// Logger is what the agent side of this package logs through: key-value
// pairs after the message, as hclog.Logger and the agent's loggers take
// them (an hclog.Logger satisfies it). It is an interface of its own so
// that apps importing this package do not pull in a logging library.
type Logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

// nopLogger discards everything.
type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}
