package notify

import (
	"errors"

	"go.uber.org/zap"
)

func newSMTP(c SMTPConfig, logger *zap.Logger) (Notifier, error) {
	_ = smtpAddress.hostPort
	return nil, errors.New("notifier: smtp is not available yet; use filesystem")
}
