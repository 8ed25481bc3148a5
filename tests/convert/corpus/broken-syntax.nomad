job "broken" {
  group "g" {
    task "t" {
      driver = "rkt"
      config {
        image = "example.com/app:1"
        args  = ["unterminated
      }
    }
  }
}
