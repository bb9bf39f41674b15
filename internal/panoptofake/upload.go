package panoptofake

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

// Panopto's UploadStatus values, the State of a sessionUpload.
const (
	StateCreated         = 0
	StateUploadStarted   = 1 // also "upload complete, please process" when PUT by the client
	StateUploadCancelled = 2
	StateProcessing      = 3
	StateComplete        = 4
	StateProcessingError = 5
	StateDeletingFiles   = 6
	StateDeleted         = 7
	StateDeletingError   = 8
)

var stateNames = map[int]string{
	0: "Uploading", 1: "UploadComplete", 2: "UploadCancelled", 3: "Processing", 4: "Complete",
	5: "ProcessingError", 6: "DeletingFiles", 7: "Deleted", 8: "DeletingError",
}

// UploadInfo is what Server.Upload reports about one sessionUpload.
type UploadInfo struct {
	ID           string
	FolderID     string
	UploadTarget string
	State        int
	SessionID    string // set once processing has created the session (State 3)
	Polls        int    // GETs since the client asked for processing
	Message      string // why processing failed, if it did
	// Objects are the completed objects by key (the path after the target).
	Objects map[string]ObjectInfo
	// PendingMultipart counts multipart uploads initiated and not completed
	// or aborted.
	PendingMultipart int
	// AbortedMultipart counts multipart uploads aborted by the client.
	AbortedMultipart int
	// CreatedBy is the Panopto user whose token created the sessionUpload.
	CreatedBy string
	// Cancelled is true once the client cancelled it (PUT State=2 or DELETE).
	Cancelled bool
	// Manifest is the parsed manifest, once processing looked for it.
	Manifest *Manifest
}

// ObjectInfo describes a completed object. The fake keeps no media bytes.
type ObjectInfo struct {
	Size      int64
	ETag      string  // quoted, as S3 sends it
	PartSizes []int64 // nil for a plain PUT
}

// Manifest is the part of Panopto's upload manifest the fake understands.
type Manifest struct {
	Key         string // object key the manifest was read from
	Title       string
	Description string
	Date        string
	Files       []string // media file names the manifest references
}

type upload struct {
	id, folderID, target string
	state                int
	polls                int
	handedOver           time.Time // when the client asked for processing (PUT State=1)
	sessionID, message   string
	objects              map[string]*object
	multipart            map[string]*multipartUpload
	manifest             *Manifest
	aborted              int
	createdBy            string
}

type object struct {
	size      int64
	etag      string
	partSizes []int64
	data      []byte // kept only for small objects (the manifest)
	modified  time.Time
}

// Upload reports on a sessionUpload by ID.
func (s *Server) Upload(id string) (UploadInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[strings.ToLower(id)]
	if !ok {
		return UploadInfo{}, false
	}
	info := UploadInfo{
		ID: u.id, FolderID: u.folderID, UploadTarget: u.target, State: u.state,
		SessionID: u.sessionID, Polls: u.polls, Message: u.message,
		Objects: map[string]ObjectInfo{}, PendingMultipart: len(u.multipart),
		AbortedMultipart: u.aborted, CreatedBy: u.createdBy, Cancelled: u.state == StateUploadCancelled,
	}
	for k, o := range u.objects {
		info.Objects[k] = ObjectInfo{Size: o.size, ETag: o.etag, PartSizes: append([]int64(nil), o.partSizes...)}
	}
	if u.manifest != nil {
		m := *u.manifest
		m.Files = append([]string(nil), m.Files...)
		info.Manifest = &m
	}
	return info, true
}

// UploadIDs lists every sessionUpload created so far, in no order.
func (s *Server) UploadIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.uploads))
	for id := range s.uploads {
		ids = append(ids, id)
	}
	return ids
}

// uploadJSON is Panopto's SessionUpload object.
type uploadJSON struct {
	ID           string  `json:"ID"`
	SessionID    *string `json:"SessionId"`
	UploadTarget string  `json:"UploadTarget"`
	FolderID     string  `json:"FolderId"`
	State        int     `json:"State"`
	Status       string  `json:"Status"`
	MessageID    *int    `json:"MessageID"`
	Message      *string `json:"Message"`
}

// processingErrorMessageID is the MessageID the stand-in gives a failed
// processing (Panopto's values are not published; any non-null one will do).
const processingErrorMessageID = 1

func (u *upload) json() uploadJSON {
	j := uploadJSON{ID: u.id, UploadTarget: u.target, FolderID: u.folderID, State: u.state, Status: stateNames[u.state]}
	if u.sessionID != "" {
		j.SessionID = &u.sessionID
	}
	if u.message != "" {
		id := processingErrorMessageID
		j.MessageID, j.Message = &id, &u.message
	}
	return j
}

// createUpload: POST sessionUpload {"FolderId":…} → 201 with a new upload.
// FolderId must be a GUID; it need not be a seeded folder.
func (s *Server) createUpload(w http.ResponseWriter, r *http.Request, g *grant) {
	var req struct {
		FolderID string `json:"FolderId"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		badRequest(w, "The request body is not valid JSON.")
		return
	}
	if !isGUID(req.FolderID) {
		badRequest(w, "FolderId must be a GUID.")
		return
	}
	id := newGUID()
	u := &upload{
		id: id, folderID: strings.ToLower(req.FolderID), state: StateCreated, createdBy: g.user,
		target:    s.origin(r) + "/Panopto/Upload/" + id,
		objects:   map[string]*object{},
		multipart: map[string]*multipartUpload{},
	}
	s.mu.Lock()
	s.uploads[id] = u
	j := u.json()
	s.mu.Unlock()
	w.Header().Set("Location", s.origin(r)+"/Panopto/PublicAPI/REST/sessionUpload/"+id)
	writeJSON(w, http.StatusCreated, j)
}

// getUpload answers the upload; after the client asked for processing each
// GET is a poll. The first one starts processing (State 3; SessionId is set
// then if the upload will succeed); the upload stays Processing until it has
// been polled ProcessingPolls times and ProcessingDelay has passed since the
// hand-over, then becomes Complete or ProcessingError.
func (s *Server) getUpload(w http.ResponseWriter, r *http.Request, _ *grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[strings.ToLower(r.PathValue("id"))]
	if !ok {
		notFound(w)
		return
	}
	if u.state == StateUploadStarted || u.state == StateProcessing {
		u.polls++
		if u.state == StateUploadStarted {
			s.beginLocked(u)
		}
		if u.polls >= s.opts.ProcessingPolls && !s.now().Before(u.handedOver.Add(s.opts.ProcessingDelay)) {
			s.finishLocked(u)
		}
	}
	writeJSON(w, http.StatusOK, u.json())
}

// putUpload: the client PUTs the whole object back with State=1 (process)
// or State=2 (cancel). ID and UploadTarget must be the ones issued, so a
// proxy that rewrote UploadTarget and did not rewrite it back is caught.
func (s *Server) putUpload(w http.ResponseWriter, r *http.Request, _ *grant) {
	var req struct {
		ID           *string `json:"ID"`
		UploadTarget *string `json:"UploadTarget"`
		FolderID     *string `json:"FolderId"`
		State        *int    `json:"State"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		badRequest(w, "The request body is not valid JSON.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[strings.ToLower(r.PathValue("id"))]
	switch {
	case !ok:
		notFound(w)
		return
	case req.ID == nil || !strings.EqualFold(*req.ID, u.id):
		badRequest(w, "ID does not match the session upload.")
		return
	case req.UploadTarget == nil || *req.UploadTarget != u.target:
		badRequest(w, "UploadTarget does not match the session upload.")
		return
	case req.FolderID != nil && !strings.EqualFold(*req.FolderID, u.folderID):
		badRequest(w, "FolderId does not match the session upload.")
		return
	case req.State == nil || *req.State != StateUploadStarted && *req.State != StateUploadCancelled:
		badRequest(w, "State must be 1 (process) or 2 (cancel).")
		return
	}
	switch {
	case u.state == StateCreated:
		u.state = *req.State
		u.handedOver = s.now()
	case u.state == *req.State:
		// An idempotent retry of the same request.
	default:
		writeJSON(w, http.StatusConflict, map[string]string{"Message": "The session upload is already " + stateNames[u.state] + "."})
		return
	}
	writeJSON(w, http.StatusOK, u.json())
}

// deleteUpload: DELETE sessionUpload/{ID} cancels an upload that was not
// yet handed over for processing (State 2), as PUT with State=2 does.
func (s *Server) deleteUpload(w http.ResponseWriter, r *http.Request, _ *grant) {
	drain(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[strings.ToLower(r.PathValue("id"))]
	switch {
	case !ok:
		notFound(w)
		return
	case u.state == StateCreated || u.state == StateUploadCancelled:
		u.state = StateUploadCancelled
	default:
		writeJSON(w, http.StatusConflict, map[string]string{"Message": "The session upload is already " + stateNames[u.state] + "."})
		return
	}
	writeJSON(w, http.StatusOK, u.json())
}

// beginLocked starts processing: State 3. If a manifest was uploaded and
// every file it names was uploaded, the session is created now, as Panopto
// does, so SessionId is known while the upload is still processing;
// otherwise the upload will end in ProcessingError.
func (s *Server) beginLocked(u *upload) {
	u.state = StateProcessing
	m, msg := u.findManifest()
	u.manifest = m
	if msg == "" {
		for _, f := range m.Files {
			if o := u.lookup(f); o == nil || o.size == 0 {
				msg = "MediaFileMissing: " + f
				break
			}
			if m := s.failFiles[path.Base(f)]; m != "" {
				msg = m
				break
			}
		}
	}
	if msg != "" {
		u.message = msg
		return
	}
	u.sessionID = newGUID()
	title := m.Title
	if title == "" {
		title = path.Base(m.Files[0])
	}
	s.sessions = append(s.sessions, session{
		id: u.sessionID, name: title, description: m.Description, folderID: u.folderID,
		createdBy: u.createdBy, start: s.now(), processing: true,
	})
}

// finishLocked ends processing: Complete with the session's duration known,
// or ProcessingError with the message beginLocked found.
func (s *Server) finishLocked(u *upload) {
	if u.message != "" {
		u.state = StateProcessingError
		return
	}
	u.state = StateComplete
	var media int64
	for _, f := range u.manifest.Files {
		if o := u.lookup(f); o != nil {
			media += o.size
		}
	}
	for i := range s.sessions {
		if s.sessions[i].id == u.sessionID {
			s.sessions[i].processing = false
			s.sessions[i].duration = nominalDuration(media)
		}
	}
}

// nominalDuration is the Duration, in seconds, the stand-in gives a session
// made from media bytes: one second per 256 KiB, at least one. The stand-in
// keeps no media, so this only has to be deterministic and plausible.
func nominalDuration(media int64) float64 {
	return max(1, float64(media/(256<<10)))
}

// lookup finds an object by key or by base name.
func (u *upload) lookup(name string) *object {
	if o, ok := u.objects[name]; ok {
		return o
	}
	for k, o := range u.objects {
		if path.Base(k) == name {
			return o
		}
	}
	return nil
}

// manifestXML reads Panopto's Universal Capture manifest, namespace-agnostic.
// Media files appear as <File>name</File> or <File Source="name"/> under
// Videos/Video, Videos, Presentations/Presentation or Audio.
type manifestXML struct {
	XMLName       xml.Name  `xml:"Session"`
	Title         string    `xml:"Title"`
	Description   string    `xml:"Description"`
	Date          string    `xml:"Date"`
	Videos        []fileXML `xml:"Videos>Video>File"`
	VideoFiles    []fileXML `xml:"Videos>File"`
	Presentations []fileXML `xml:"Presentations>Presentation>File"`
	Audio         []fileXML `xml:"Audio>File"`
}

type fileXML struct {
	Source string `xml:"Source,attr"`
	Text   string `xml:",chardata"`
}

func (u *upload) findManifest() (*Manifest, string) {
	keys := make([]string, 0, len(u.objects))
	for k, o := range u.objects {
		if strings.HasSuffix(strings.ToLower(k), ".xml") && o.data != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return nil, "ManifestMissing"
	}
	var x manifestXML
	if err := xml.NewDecoder(bytes.NewReader(u.objects[keys[0]].data)).Decode(&x); err != nil {
		return &Manifest{Key: keys[0]}, "ManifestInvalid"
	}
	m := &Manifest{Key: keys[0], Title: strings.TrimSpace(x.Title), Description: strings.TrimSpace(x.Description), Date: strings.TrimSpace(x.Date)}
	for _, list := range [][]fileXML{x.Videos, x.VideoFiles, x.Presentations, x.Audio} {
		for _, f := range list {
			name := strings.TrimSpace(f.Source)
			if name == "" {
				name = strings.TrimSpace(f.Text)
			}
			if name != "" {
				m.Files = append(m.Files, name)
			}
		}
	}
	if len(m.Files) == 0 {
		return m, "ManifestHasNoMedia"
	}
	return m, ""
}
