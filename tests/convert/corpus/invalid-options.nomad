# Parses, but has options the rkt driver refused or that cannot run.
job "odd" {
  group "g" {
    task "no-image" {
      driver = "rkt"
      config {
        command = "/bin/true"
      }
    }
    task "bad-bits" {
      driver = "rkt"
      config {
        image            = "example.com/app:1"
        insecure_options = ["image", "everything"]
        volumes          = ["/only-one-part", "relative/path:/data"]
        hostname         = "not-an-option"
        debug            = "perhaps"
      }
      resources {
        network {
          port "web" {}
        }
      }
      dispatch_payload {
        file = "input.json"
      }
    }
  }
}
