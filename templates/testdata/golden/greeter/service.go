package greeter

import (
	"context"
	"errors"
)

// ErrEmptyName is returned for a request without a name.
var ErrEmptyName = errors.New("empty name")

// Service is the business logic, independent of any transport.
type Service interface {
	// Hello returns a greeting for name.
	Hello(ctx context.Context, name string) (string, error)
}

type service struct{}

// New returns the service.
func New() Service { return service{} }

func (service) Hello(_ context.Context, name string) (string, error) {
	if name == "" {
		return "", ErrEmptyName
	}
	return "Hello, " + name, nil
}
