// Nomad >= 1.0 (HCL2): count > 1, placement rules, a script check, a heredoc.
variable "release" {
  default = "3.4"
}

job "cache" {
  datacenters = ["eu-west", "eu-central"]
  region      = "europe"

  constraint {
    attribute = "${driver.rkt}"
    value     = "1"
  }

  constraint {
    attribute = "${driver.rkt.version}"
    operator  = "version"
    value     = ">= 1.27.0"
  }

  meta {
    owner = "platform"
  }

  group "memcache" {
    count = 3

    constraint {
      attribute = "${attr.kernel.name}"
      value     = "linux"
    }

    affinity {
      attribute = "${node.class}"
      value     = "fast-ram"
      weight    = 50
    }

    network {
      port "mc" {
        static = 11211
      }
    }

    task "memcached" {
      driver = "rkt"

      config {
        image    = "example.com/memcached:1.6"
        args     = ["-m", "${NOMAD_MEMORY_LIMIT}", "-v", "$${NOT_INTERPOLATED}", "-p", "$(port)"]
        port_map {
          mc = "memcache"
        }
        dns_servers = ["host"]
      }

      env {
        BANNER = <<EOT
memcached for ${NOMAD_JOB_NAME}
EOT
        RELEASE = var.release
      }

      resources {
        cpu    = 200
        memory = 128
      }

      service {
        name = "memcache"
        port = "mc"
        check {
          name     = "stats"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "echo stats | nc 127.0.0.1 11211"]
          interval = "15s"
          timeout  = "3s"
          check_restart {
            limit = 3
            grace = "30s"
          }
        }
        check {
          name     = "tcp-open"
          type     = "tcp"
          interval = "10s"
          timeout  = "2s"
        }
      }
    }
  }

  group "pinned" {
    constraint {
      attribute = "${node.unique.name}"
      value     = "node-b"
    }

    task "warmer" {
      driver = "rkt"
      config {
        image = "example.com/cache-warmer:1.0"
        net   = ["host"]
      }
      kill_signal = "SIGINT"
    }
  }
}
