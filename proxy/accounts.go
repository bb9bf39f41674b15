package proxy

import (
	"net/http"
	"strconv"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// maxAccountsPage bounds GET /-/accounts's limit.
const maxAccountsPage = 1000

// accounts serves GET /-/accounts?state=disconnected[&after=NAME&limit=N]:
// the names, in byte order, of the accounts whose grant Panopto refused, so
// that OnTrack can ask those students to connect again. next, when not "",
// is the after of the following page.
func (h *Handler) accounts(w http.ResponseWriter, r *http.Request, o *Options) {
	if o.AccountsMode == token.AccountsOff {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "accounts_mode", "detail": "per-account grants need accounts.mode idp or login"})
		return
	}
	q := r.URL.Query()
	if q.Get("state") != "disconnected" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_state", "detail": "state must be disconnected"})
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAccountsPage {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_limit", "detail": "limit must be within 1-1000"})
			return
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" && !token.ValidAccount(after) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_account"})
		return
	}
	if h.deps.Disconnected == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "not_listable", "detail": "the token store cannot list its accounts"})
		return
	}
	names, next, err := h.deps.Disconnected(r.Context(), after, limit)
	if err != nil {
		h.log.Warn("list disconnected accounts: token store", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "store_unavailable"})
		return
	}
	if names == nil {
		names = []string{} // [] rather than null
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": names, "next": next})
}
