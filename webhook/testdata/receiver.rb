# A webhook receiver as OnTrack would run it, on plain Ruby: it verifies
# each delivery with the standardwebhooks gem (its lib/ directory on the
# load path) and answers 204, or 400 when verification fails. It prints its
# port, then one line per delivery: "ok <webhook-id> <type>" or "bad <reason>".
require "socket"
require "standardwebhooks"

$stdout.sync = true
webhook = StandardWebhooks::Webhook.new(ENV.fetch("WEBHOOK_SECRET"))
server = TCPServer.new("127.0.0.1", 0)
puts server.addr[1]

loop do
  client = server.accept
  begin
    request_line = client.gets or next
    headers = {}
    while (line = client.gets) && line != "\r\n"
      name, value = line.split(":", 2)
      headers[name.strip.downcase] = value.strip
    end
    body = client.read(Integer(headers.fetch("content-length", "0")))
    begin
      payload = webhook.verify(body, headers)
      puts "ok #{headers['webhook-id']} #{payload['type']} #{request_line.split[0]}"
      client.write "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    rescue StandardWebhooks::WebhookVerificationError => e
      puts "bad #{e.message}"
      client.write "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    end
  ensure
    client.close
  end
end
