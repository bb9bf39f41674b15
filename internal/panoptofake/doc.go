// Package panoptofake is an in-memory stand-in for Panopto: its OAuth2 server,
// REST v1 API, PublicAPI sessionUpload and the S3-style upload target. The
// sidecar's tests and `panopto-sidecar demo` serve it; it is deliberately
// strict, so that a sidecar mistake fails a test instead of a deployment.
//
// Serve a Server with httptest.NewServer or any listener; it is an
// http.Handler. Time comes from Options.Now, so expiry is tested without
// sleeping. Nothing secret is logged.
//
// Like Panopto on IIS, it matches paths case-insensitively: the fixed
// segments of every path below may come in any casing
// (/panopto/api/v1/folders, /Panopto/PublicAPI/Rest/sessionUpload); ids and
// upload keys are taken as sent, and handlers see the path as sent.
//
// # OAuth2 (under /Panopto/oauth2)
//
//	GET  /.well-known/openid-configuration
//	     issuer, authorization_endpoint, token_endpoint, revocation_endpoint,
//	     introspection_endpoint for the request's origin.
//	GET  /connect/authorize
//	     Requires client_id, an exactly registered redirect_uri,
//	     response_type=code, scope (openid profile email api offline_access),
//	     state, nonce, code_challenge and code_challenge_method=S256.
//	     Auto-approves (as login_hint, else Options.DefaultUser): 302 to
//	     redirect_uri?code=…&state=…. A bad client_id or redirect_uri is an HTML
//	     400 page; any other error redirects with error=… and the state.
//	     DenyNextAuthorize makes the next one redirect with access_denied.
//	     Codes are single-use (a second use revokes the grant they produced),
//	     live 60 s and are bound to client, redirect_uri, PKCE challenge, scopes.
//	POST /connect/token (application/x-www-form-urlencoded)
//	     Client auth by HTTP Basic (id and secret form-urlencoded) or
//	     client_id/client_secret in the body; both may be sent if they agree.
//	     Failure: 401 {"error":"invalid_client"}. Grants:
//	       authorization_code  code, redirect_uri, code_verifier (S256).
//	       refresh_token       rotates: the old refresh token dies; presenting
//	                           it again revokes the whole grant (every token of
//	                           that login) and answers 400 invalid_grant.
//	       password            Options.Users, or the identity-provider variant:
//	                           username `provider\user` and password
//	                           base64(sha256(lower(username)+"|"+lower(appKey))).
//	     Answers access_token, token_type Bearer, expires_in, scope, and a
//	     refresh_token when scope has offline_access. Faults queued by
//	     InjectTokenFaults are served before any check.
//	POST /connect/revocation  token=… (client-authenticated): revokes the grant; 200.
//	POST /connect/introspect  token=… (client-authenticated): {"active":…,…}.
//
// # REST v1 (bearer with scope api; bad bearer → 401 JSON)
//
//	GET  /Panopto/api/v1/folders                    paged: pageNumber (0-based), pageSize
//	GET  /Panopto/api/v1/folders/search?searchQuery=  paged, case-insensitive
//	GET  /Panopto/api/v1/folders/{id}
//	GET  /Panopto/api/v1/folders/{id}/children      paged; the all-zero id is the root
//	GET  /Panopto/api/v1/folders/{id}/sessions      paged
//	GET  /Panopto/api/v1/sessions/{id}
//	POST /Panopto/api/v1/echo                       streams the body back (full duplex)
//	GET  /Panopto/api/v1/stream?bytes=N             N bytes of PatternReader data, streamed
//	GET  /Panopto/api/v1/whoami                     User, GrantId, GrantType, ClientId, Scope
//
// List answers are {"Results":[…]}; a page past the end has empty Results.
// InjectAPIFaults queues faults (e.g. FaultStatus(429)) for these routes and
// the PublicAPI ones.
//
// # PublicAPI (bearer; bad bearer → 401, or 403 with Options.PublicAPI403)
//
//	POST /Panopto/PublicAPI/REST/sessionUpload      {"FolderId":guid} → 201
//	     {"ID","SessionId":null,"UploadTarget":"{origin}/Panopto/Upload/{ID}","FolderId","State":0,"Status","MessageID":null,"Message":null}
//	GET  /Panopto/PublicAPI/REST/sessionUpload/{ID}
//	     After a PUT with State=1 each GET is a poll. The first starts
//	     processing: State 3, and if an .xml manifest and every media file it
//	     names were uploaded, the session is created (SessionId set; the
//	     session reads with Duration null). It stays 3 until Options.ProcessingPolls
//	     polls and Options.ProcessingDelay since the PUT, then 4 (Complete;
//	     the session's Duration set) or 5 (ProcessingError, Message says why).
//	PUT  /Panopto/PublicAPI/REST/sessionUpload/{ID}
//	     The whole object with State=1 (process) or 2 (cancel). ID and
//	     UploadTarget must be exactly the ones issued; otherwise 400.
//	DELETE /Panopto/PublicAPI/REST/sessionUpload/{ID}
//	     Cancels (State 2) an upload not yet handed over; 409 after State=1.
//
// Server.Upload reports what the stand-in saw of an upload: its creator (the
// token's user, also the CreatedBy of the session it becomes), whether it was
// cancelled, multipart uploads pending and aborted, objects and manifest.
//
// The origin of UploadTarget is Options.PublicOrigin, else the request's Host
// with https when it arrived over TLS.
//
// # Upload target (S3 multipart protocol, path style; no bearer)
//
//	POST   /Panopto/Upload/{ID}/{key}?uploads                    InitiateMultipartUploadResult
//	PUT    /Panopto/Upload/{ID}/{key}?partNumber=N&uploadId=U    200, ETag "md5"
//	POST   /Panopto/Upload/{ID}/{key}?uploadId=U                 CompleteMultipartUpload → Result
//	DELETE /Panopto/Upload/{ID}/{key}?uploadId=U                 abort, 204
//	PUT    /Panopto/Upload/{ID}/{key}                            whole object
//	HEAD   /Panopto/Upload/{ID}/{key}                            size, ETag
//	GET    /Panopto/Upload/{ID}/{key}                            only objects ≤ 1 MiB are kept
//
// An S3 client reaches these with path-style addressing, endpoint = the
// UploadTarget's origin, bucket "Panopto" and key "Upload/{ID}/{file}".
// Bodies are streamed: md5 and size are computed on the fly and only objects
// up to 1 MiB (manifests) are kept. Like Panopto's upload server, which is not
// full S3, it refuses aws-chunked framing (Content-Encoding aws-chunked,
// STREAMING-… payloads, x-amz-decoded-content-length) and trailers
// (x-amz-trailer) with 400 NotImplemented. Content-Length, Content-MD5, a hex
// x-amz-content-sha256 and x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}
// headers are verified. Parts are at most 25 MiB (EntityTooLarge) and every
// part but the last at least 5 MiB (EntityTooSmall, at completion).
// A request carrying Authorization: Bearer is rejected with 400, since a
// sidecar must not inject on upload routes. S3 signature version 2
// ("AWS key:signature", what Panopto's sample sends) is verified against
// Options.S3SecretKey when set; AWS4-HMAC-SHA256 signatures with any keys are
// accepted. After State=1 the target is closed (403 AccessDenied).
//
// The manifest is Panopto's Universal Capture XML:
//
//	<Session xmlns="http://tempuri.org/UniversalCaptureSpecification/v1">
//	  <Title>…</Title><Description>…</Description><Date>…</Date>
//	  <Videos><Video><Start>PT0S</Start><File>file.mp4</File><Type>Primary</Type></Video></Videos>
//	</Session>
//
// File may also name its media with a Source attribute.
package panoptofake
