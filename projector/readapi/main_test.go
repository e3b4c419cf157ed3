package readapi_test

import (
	"os"
	"testing"

	"github.com/convsync/convsync/internal/testenv"
)

// TestMain silences go-redis's dial-retry logging: the outage tests provoke it.
func TestMain(m *testing.M) {
	testenv.QuietRedis()
	os.Exit(m.Run())
}
